"""A piezo buzzer on a PWM channel it is given: short beeps that never hold up the app."""

from micropython import const

from pos.compat import sleep_ms, spawn

_OK_HZ = const(2700)  # near a common piezo's resonance: loudest for the least current
_ERROR_HZ = const(900)
_BEEP_MS = const(80)
_HALF_DUTY = const(32768)  # a square wave: the loudest a piezo gets


class Buzzer:
    def __init__(self, pwm):
        """pwm: a machine.PWM on the buzzer's pin; silenced here (duty 0) until a beep."""
        self._pwm = pwm
        pwm.duty_u16(0)

    def beep(self, kind):
        spawn(self._beep(_ERROR_HZ if kind == "error" else _OK_HZ, _BEEP_MS))

    async def _beep(self, frequency, duration_ms):
        self._pwm.freq(frequency)
        self._pwm.duty_u16(_HALF_DUTY)
        await sleep_ms(duration_ms)
        self._pwm.duty_u16(0)
