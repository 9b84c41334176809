"""Wi-Fi on the ESP32: a station that tries the configured networks in order, reconnects
with backoff when the link drops, and reports the link as events for the terminal."""

import json

import network
from micropython import const

from pos.compat import sleep_ms

CONNECT_WAIT_MS = const(10000)  # per network, before trying the next
BACKOFF_START_MS = const(2000)
BACKOFF_MAX_MS = const(120000)
WIFI_CONFIG = "/config/wifi.json"  # {"networks": [{"ssid": "...", "password": "..."}, ...]}


def load_networks(path=WIFI_CONFIG):
    """[(ssid, password)] from the config; [] (no Wi-Fi) when the file is missing or bad."""
    try:
        with open(path) as source:
            doc = json.load(source)
        networks = [(entry["ssid"], entry.get("password", "")) for entry in doc["networks"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    # Texts only: a number for a name would fail in WLAN.connect, in the Wi-Fi task, which
    # an error ends with the app (pos.compat.run: main.py logs it and restarts).
    return [(s, p) for s, p in networks if isinstance(s, str) and isinstance(p, str)]


class Wifi:
    def __init__(self, networks):
        self.networks = networks
        self._wlan = network.WLAN(network.STA_IF)
        self.connected = False
        self.ssid = None

    def rssi(self):
        """Signal strength in dBm (for the heartbeat), or 0 when not connected."""
        return self._wlan.status("rssi") if self._wlan.isconnected() else 0

    async def _join(self, ssid, password):
        wlan = self._wlan
        try:
            wlan.connect(ssid, password)
        except OSError:  # "Wifi Internal Error": the driver still reconnecting on its own
            return False
        waited = 0
        while waited < CONNECT_WAIT_MS:
            if wlan.isconnected():
                return True
            await sleep_ms(250)
            waited += 250
        try:
            wlan.disconnect()
        except OSError:
            pass  # not joined: nothing to leave
        return False

    async def run(self, on_link):
        """Keep the link up for ever; on_link(True/False) on every change. Never ends with
        an error of the radio's (an error in a task ends the app: pos.compat.run); it tries
        again after the backoff."""
        wlan = self._wlan
        backoff = BACKOFF_START_MS
        while True:
            if wlan.isconnected():
                if not self.connected:
                    self.connected = True
                    backoff = BACKOFF_START_MS
                    on_link(True)
                await sleep_ms(1000)
                continue
            if self.connected:
                self.connected = False
                on_link(False)
            networks = self.networks
            try:
                wlan.active(True)  # each round: a radio that did not start may start later
            except OSError:
                networks = ()  # none tried this round: the backoff, then again
            for ssid, password in networks:
                if await self._join(ssid, password):
                    self.ssid = ssid
                    break
            else:
                await sleep_ms(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_MS)
