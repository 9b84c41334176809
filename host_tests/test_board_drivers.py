"""lib/board's printer and buzzer on CPython, over a fake UART and PWM they are given: the
ESC/POS bytes of a real receipt (pos.receipt) and the buzzer's tones."""

import asyncio

import pytest

from boardkit import Pwm, Uart, import_driver
from pos.merchants import Merchant
from pos.money import MAX_AMOUNT_MINOR
from pos.receipt import CUSTOMER_COPY, sale_receipt
from pos.record import CREDIT, SALE, Record

ESC_INIT = b"\x1b@"
CODE_PAGE_1252 = b"\x1bt\x10"
BOLD_ON = b"\x1bE\x01"
BOLD_OFF = b"\x1bE\x00"
CUT = b"\x1dV\x42\x03"


@pytest.fixture()
def printer_module(monkeypatch):
    return import_driver(monkeypatch, "printer")


@pytest.fixture()
def buzzer_module(monkeypatch):
    return import_driver(monkeypatch, "buzzer")


def receipt(name="Café Crème", columns=32):
    merchant = Merchant(1, "100000000000001", name, "EUR", {"max_sale_minor": MAX_AMOUNT_MINOR})
    record = Record(
        SALE, 1, 1234, 978, method=CREDIT, cashier=3, time=1795788300, receipt=57,
        token=b"\x9a\x8b\x7c\x6d\x5e\x4f", last_four=4321,
    )  # fmt: skip
    return list(sale_receipt(record, merchant, "T0001", "A1B2C3", False, CUSTOMER_COPY, columns))


def test_a_receipt_goes_out_as_esc_pos(printer_module):
    uart = Uart()
    lines = receipt()
    printer_module.Printer(uart).print_lines(lines)
    sent = bytes(uart.sent)
    # Initialise and choose the code page on every slip (the printer has its own supply).
    assert sent.startswith(ESC_INIT + CODE_PAGE_1252)
    assert sent.endswith(CUT)
    body = sent[len(ESC_INIT + CODE_PAGE_1252) : -len(CUT)]
    printed = body.split(b"\n")
    assert printed[-1] == b"" and len(printed) - 1 == len(lines)
    # The heading, in Windows-1252 (é = 0xE9, è = 0xE8), bold.
    assert printed[0] == BOLD_ON + b" " * 11 + b"Caf\xe9 Cr\xe8me" + BOLD_OFF
    amount = [line for line in printed if b"AMOUNT" in line]
    assert amount == [BOLD_ON + b"AMOUNT EUR" + b" " * 17 + b"12.34" + BOLD_OFF]
    # Everything else plain, as the receipt's text.
    plain = [line.decode() for line in printed[1:-1] if b"AMOUNT" not in line]
    assert plain == [line for line in lines[1:] if not line.startswith("AMOUNT")]
    assert any(line.endswith("**** 4321") for line in plain), plain
    assert BOLD_ON not in b"".join(printed[1:-1]).replace(amount[0], b"")


def test_two_slips_each_start_afresh(printer_module):
    uart = Uart()
    printer = printer_module.Printer(uart)
    printer.print_lines(["X REPORT", "line"])
    printer.print_lines(["Z REPORT"])
    assert bytes(uart.sent) == (
        ESC_INIT + CODE_PAGE_1252 + BOLD_ON + b"X REPORT" + BOLD_OFF + b"\nline\n" + CUT
        + ESC_INIT + CODE_PAGE_1252 + BOLD_ON + b"Z REPORT" + BOLD_OFF + b"\n" + CUT
    )  # fmt: skip


def test_a_slip_cut_short_by_an_error_is_still_cut(printer_module):
    """The lines are made as they are taken: an error making one (no heap for it) ends the
    slip there, bold off and cut, and goes on up (the device then restarts)."""

    def lines():
        yield "X REPORT"
        yield "line"
        raise MemoryError("no heap for the next line")

    uart = Uart()
    with pytest.raises(MemoryError):
        printer_module.Printer(uart).print_lines(lines())
    assert bytes(uart.sent) == (
        ESC_INIT + CODE_PAGE_1252 + BOLD_ON + b"X REPORT" + BOLD_OFF + b"\nline\n" + BOLD_OFF + CUT
    )


def test_text_the_code_page_lacks_and_control_codes_print_as_question_marks(printer_module):
    uart = Uart()
    # An ESC in a (pushed) merchant name must not reach the printer as a command.
    printer_module.Printer(uart).print_lines(["head", "Tea\x1b@\x1dV House 10€ 茶"])
    second = bytes(uart.sent).split(b"\n")[1]
    assert second == b"Tea?@?V House 10\x80 ?"
    assert b"\x1b" not in second and b"\x1d" not in second


def test_a_line_longer_than_the_buffer_is_sent_whole(printer_module):
    uart = Uart()
    long_line = "".join(chr(ord("a") + i % 26) for i in range(100))
    printer_module.Printer(uart).print_lines(["head", long_line])
    assert bytes(uart.sent).split(b"\n")[1] == long_line.encode()


def beeps(buzzer_module, kinds):
    pwm = Pwm()

    async def run():
        buzzer = buzzer_module.Buzzer(pwm)
        for kind in kinds:
            buzzer.beep(kind)
            await asyncio.sleep(0.2)

    asyncio.run(run())
    return pwm.log


@pytest.fixture()
def sleep_ms(monkeypatch, buzzer_module):
    # pos.compat's sleep_ms (asyncio's on CPython), the beep's length kept.
    slept = []
    compat_sleep_ms = buzzer_module.sleep_ms

    async def sleep_ms(ms):
        slept.append(ms)
        await compat_sleep_ms(ms)

    monkeypatch.setattr(buzzer_module, "sleep_ms", sleep_ms)
    return slept


def test_the_buzzer_is_silent_until_it_beeps(buzzer_module):
    pwm = Pwm()
    buzzer_module.Buzzer(pwm)
    assert pwm.log == [("duty", 0)]


def test_ok_and_error_beeps_are_two_tones_of_80_ms(buzzer_module, sleep_ms):
    log = beeps(buzzer_module, ["ok", "error"])
    assert log == [
        ("duty", 0),
        ("freq", 2700), ("duty", 32768), ("duty", 0),  # ok: high, half duty, then off
        ("freq", 900), ("duty", 32768), ("duty", 0),  # error: low
    ]  # fmt: skip
    assert sleep_ms == [80, 80]
