"""The device smoke test, run on the board by `tools/test device` (tools/host/devicetest.py),
which compares its lines with the ones it expects.

    import smoke; smoke.main(target, keys_s)

On an ESP32 (target "esp32") it drives the reference board's parts as Esp32Board makes them
(board.esp32board.make_parts, without the watchdog): a test pattern on the display (an I2C
write the display must acknowledge), the printer's status (DLE EOT 1, answered on its RX
line) and a test slip, an ok and an error beep, then echoes every key pressed for keys_s
seconds; then the free heap with the app's code imported (from /rom on a board), and again
with Wi-Fi (config/wifi.json) and a TLS connection to the back end (config/uplink.json,
config/ca.der) up. On the unix port behind a pty (target "unix", the tests) the parts are
tools/emu/fakeparts.py's, faked at the pins, and Wi-Fi is skipped (no network module).
"""

import gc
import json

from pos.compat import run as run_tasks
from pos.compat import sleep_ms, spawn

_STATUS = b"\x10\x04\x01"  # DLE EOT 1: the printer's status byte
_WIFI_WAIT_MS = 30000


def parts(target):
    if target == "unix":
        import fakeparts

        return fakeparts.make_parts()
    from board.esp32board import make_parts, reset_word

    return make_parts() + (reset_word(),)


def show_pattern(display):
    from pos.screen import Screen

    screen = Screen()
    for row in range(8):
        screen.put(row, (b"#." if row % 2 else b".#") * 8)
    display.show(screen)
    return screen


def printer_status(printer):
    uart = printer.uart
    while uart.any():
        uart.read()  # anything stale
    uart.write(_STATUS)
    answer = uart.read(1)
    return answer[0] if answer else None


async def echo_keys(keypad, display, seconds):
    from board.keypad import SCAN_MS
    from pos.compat import ticks_diff, ticks_ms
    from pos.screen import Screen

    screen = Screen()
    screen.put(0, b"Key test")
    pressed = 0
    started = ticks_ms()
    while ticks_diff(ticks_ms(), started) < seconds * 1000:
        keypad.scan()
        key = keypad.pop()
        if key is not None:
            pressed += 1
            print("key " + key)
            screen.put(2, ("Key " + key).encode())
            display.show(screen)
        await sleep_ms(SCAN_MS)
    return pressed


def heap_free():
    gc.collect()
    return gc.mem_free()


async def wifi_up():
    """The board's Wifi once joined, or a SKIP text."""
    try:
        import network  # noqa: F401 (only a board with a radio has it)
    except ImportError:
        return None, "SKIP no network module"
    from board.wifi import Wifi, load_networks

    networks = load_networks("config/wifi.json")
    if not networks:
        return None, "SKIP no config/wifi.json"
    wifi = Wifi(networks)
    spawn(wifi.run(lambda up: None))
    waited = 0
    while not wifi.connected and waited < _WIFI_WAIT_MS:
        await sleep_ms(250)
        waited += 250
    if not wifi.connected:
        return None, "down after %d s" % (_WIFI_WAIT_MS // 1000)
    return wifi, "up, rssi %d dBm" % wifi.rssi()


async def tls_up():
    """Free heap while a TLS connection to the back end is open (a request answered), or
    a SKIP text."""
    try:
        with open("config/uplink.json") as source:
            doc = json.load(source)
        with open("config/ca.der", "rb") as source:
            ca_der = source.read()
    except OSError:
        return "SKIP no config/uplink.json or config/ca.der"
    from pos.uplink import Uplink, tls_context

    uplink = Uplink(None, doc["host"], doc["port"], doc["tid"], tls_context(ca_der))
    try:
        reader, writer = await uplink.connect()
        # The handshake happens on first use: one request, its status line read.
        request = "HEAD / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % doc["host"]
        writer.write(request.encode())
        await writer.drain()
        status = await reader.readline()
    except Exception as exc:  # a refusal, a bad certificate: the line says which
        return "failed: %r" % (exc,)
    free = heap_free()
    writer.close()
    await writer.wait_closed()
    if not status.startswith(b"HTTP/1."):
        return "no HTTP answer: %r" % (status[:40],)
    return "up to %s:%d, %d bytes free" % (doc["host"], doc["port"], free)


async def run(target, keys_s):
    print("smoke: OneTill board smoke test on %s" % target)
    keypad, display, printer, buzzer, reset_cause = parts(target)
    print("board: reset cause " + reset_cause)
    show_pattern(display)
    print("display: test pattern on 8 rows")
    status = printer_status(printer)
    printer.print_lines(["OneTill test slip", "Printer: ESC/POS", "-" * 32, "Caf\xe9 10\u20ac"])
    if status is None:
        print("printer: no status answer (check RX, GPIO 16), test slip sent")
    else:
        print("printer: status 0x%02x, test slip sent" % status)
    buzzer.beep("ok")
    await sleep_ms(200)
    buzzer.beep("error")
    await sleep_ms(200)
    print("buzzer: ok and error beeps")
    print("keys: press keys for %d s" % keys_s)
    pressed = await echo_keys(keypad, display, keys_s)
    print("keys: %d pressed" % pressed)
    import pos.app

    print("heap: %d bytes free with pos.app from %s" % (heap_free(), pos.app.__file__))
    _, wifi_text = await wifi_up()
    print("wifi: " + wifi_text)
    print("tls: " + await tls_up())
    print("smoke: done")


def main(target="esp32", keys_s=10):
    run_tasks(run(target, keys_s))
