"""The pin map of the reference OneTill board (ESP32-WROOM-32): every GPIO number lives here.
The drivers take Pin, UART and PWM objects; Esp32Board makes them from these numbers."""

from micropython import const

# 4x4 matrix keypad: rows are driven low one at a time, columns read with pull-ups.
KEYPAD_ROWS = (const(13), const(12), const(14), const(27))
KEYPAD_COLS = (const(26), const(25), const(33), const(32))

# I2C bus shared by the SSD1306 display and the optional PCF8574 LCD backpack.
I2C_ID = const(0)
I2C_SDA = const(21)
I2C_SCL = const(22)
I2C_FREQ_HZ = const(400_000)

# ESC/POS thermal printer on UART2.
PRINTER_UART_ID = const(2)
PRINTER_TX = const(17)
PRINTER_RX = const(16)
PRINTER_BAUD = const(9600)
PRINTER_TIMEOUT_MS = const(200)  # a read (the status byte) waits this long for an answer

BUZZER = const(4)
BUZZER_HZ = const(2700)  # the PWM's frequency at start; silent (duty 0) until a beep


def keypad_pins():
    """(rows, cols) as Keypad takes them: rows driven high, columns pulled up. Shared by
    Esp32Board and the safe-mode check at boot."""
    from machine import Pin

    rows = [Pin(number, Pin.OUT, value=1) for number in KEYPAD_ROWS]
    cols = [Pin(number, Pin.IN, Pin.PULL_UP) for number in KEYPAD_COLS]
    return rows, cols
