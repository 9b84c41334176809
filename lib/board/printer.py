"""An ESC/POS thermal receipt printer on a UART."""

from machine import UART

from board import pins

_INIT = b"\x1b@"  # ESC @: reset the printer
_CUT = b"\x1dV\x42\x03"  # GS V 66 3: feed three lines and cut


class Printer:
    def __init__(self, uart_id=pins.PRINTER_UART_ID):
        self._uart = UART(
            uart_id, baudrate=pins.PRINTER_BAUD, tx=pins.PRINTER_TX, rx=pins.PRINTER_RX
        )
        self._uart.write(_INIT)

    def print_lines(self, lines):
        uart = self._uart
        for text in lines:
            uart.write(text.encode())
            uart.write(b"\n")
        uart.write(_CUT)
