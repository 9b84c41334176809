"""lib/board/wifi.py on CPython, with the ESP32's network module faked at the module edge:
an error of the radio's never ends the Wi-Fi task (an error in any task ends the app,
pos.compat.run), and a config with a name that is not a text joins nothing."""

import json
import sys
import types

from boardkit import import_driver
from pos.compat import run, sleep_ms, spawn


class Wlan:
    """A station whose radio fails to start once and whose driver refuses one connect
    ("Wifi Internal Error", as it does while it reconnects on its own)."""

    def __init__(self):
        self.activations = 0
        self.refusals = 1
        self.up = False
        self.joined = []

    def active(self, on):
        self.activations += 1
        if self.activations == 1:
            raise OSError("radio did not start")

    def connect(self, ssid, password):
        if self.refusals:
            self.refusals -= 1
            raise OSError("Wifi Internal Error")
        self.joined.append(ssid)
        self.up = True

    def isconnected(self):
        return self.up

    def disconnect(self):
        raise OSError("Wifi Not Started")  # never joined: the driver complains

    def status(self, name):
        return -60


def wifi_module(monkeypatch, wlan):
    network = types.ModuleType("network")
    network.STA_IF = 0
    network.WLAN = lambda interface: wlan
    monkeypatch.setitem(sys.modules, "network", network)
    wifi = import_driver(monkeypatch, "wifi")
    monkeypatch.setattr(wifi, "BACKOFF_START_MS", 10)  # const() is a plain name on CPython
    monkeypatch.setattr(wifi, "CONNECT_WAIT_MS", 50)
    return wifi


def test_radio_errors_are_retried_and_the_link_comes_up(monkeypatch):
    wlan = Wlan()
    wifi = wifi_module(monkeypatch, wlan)
    links = []

    async def main():
        spawn(wifi.Wifi([("market-hall", "secret")]).run(links.append))
        for _ in range(300):
            await sleep_ms(10)
            if links:
                return

    run(main())  # an error in the Wi-Fi task would end run() with it
    assert links == [True]
    assert wlan.activations >= 2 and wlan.refusals == 0
    assert wlan.joined == ["market-hall"]


def test_a_network_whose_name_is_not_a_text_is_left_out(monkeypatch, tmp_path):
    wifi = wifi_module(monkeypatch, Wlan())
    config = tmp_path / "wifi.json"
    config.write_text(
        json.dumps(
            {
                "networks": [
                    {"ssid": 42, "password": "x"},
                    {"ssid": "stall-7", "password": None},
                    {"ssid": "market-hall", "password": "secret"},
                    {"ssid": "open-net"},
                ]
            }
        )
    )
    assert wifi.load_networks(str(config)) == [("market-hall", "secret"), ("open-net", "")]
    config.write_text(json.dumps({"networks": ["market-hall"]}))
    assert wifi.load_networks(str(config)) == []
