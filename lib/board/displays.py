"""The two displays a OneTill board may carry, both showing pos.screen.Screen values:
an SSD1306 128x64 OLED (micropython-lib's ssd1306 driver, installed by the deploy tool) and
a 20x4 HD44780 character LCD behind a PCF8574 I2C backpack."""

import time

from micropython import const

_LCD_ADDRESS = const(0x27)
_BACKLIGHT = const(0x08)
_ENABLE = const(0x04)
_REGISTER_SELECT = const(0x01)


class Oled:
    def __init__(self, i2c, address=0x3C):
        import ssd1306  # micropython-lib; required by firmware/manifest.py

        self._oled = ssd1306.SSD1306_I2C(128, 64, i2c, addr=address)
        self.menu_rows = 5

    def show(self, screen):
        oled = self._oled
        oled.fill(0)
        for row, text in enumerate(screen.text()):
            oled.text(text, 0, row * 8, 1)
        oled.show()


class Lcd2004:
    """HD44780 in 4-bit mode through a PCF8574: P0 RS, P1 RW, P2 E, P3 backlight, P4-P7 data."""

    def __init__(self, i2c, address=_LCD_ADDRESS):
        self._i2c = i2c
        self._address = address
        self._byte = bytearray(1)
        self.menu_rows = 2
        time.sleep_ms(50)
        for nibble in (0x30, 0x30, 0x30, 0x20):  # the datasheet's reset into 4-bit mode
            self._write_nibble(nibble, 0)
            time.sleep_ms(5)
        for command in (0x28, 0x0C, 0x06, 0x01):  # 2 lines 5x8, display on, entry, clear
            self._command(command)
        time.sleep_ms(2)

    def _write_nibble(self, nibble, mode):
        data = nibble | mode | _BACKLIGHT
        for value in (data | _ENABLE, data):
            self._byte[0] = value
            self._i2c.writeto(self._address, self._byte)

    def _command(self, value, mode=0):
        self._write_nibble(value & 0xF0, mode)
        self._write_nibble((value << 4) & 0xF0, mode)

    def show(self, screen):
        for line, text in enumerate(screen.lcd_rows()):
            self._command(0x80 | (0x00, 0x40, 0x14, 0x54)[line])  # DDRAM start of each line
            for ch in text[:20] + " " * (20 - len(text[:20])):
                self._command(ord(ch), _REGISTER_SELECT)
