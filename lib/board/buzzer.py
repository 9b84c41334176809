"""A piezo buzzer on a PWM pin: short beeps that never hold up the app."""

import asyncio

from machine import PWM, Pin
from micropython import const

from board import pins

_OK_HZ = const(2700)
_ERROR_HZ = const(900)


class Buzzer:
    def __init__(self, pin=pins.BUZZER):
        self._pwm = PWM(Pin(pin), freq=_OK_HZ, duty_u16=0)

    def beep(self, kind):
        asyncio.create_task(self._beep(_ERROR_HZ if kind == "error" else _OK_HZ, 80))

    async def _beep(self, frequency, duration_ms):
        self._pwm.freq(frequency)
        self._pwm.duty_u16(32768)
        await asyncio.sleep_ms(duration_ms)
        self._pwm.duty_u16(0)
