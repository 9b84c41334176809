"""Early start on the ESP32: first an update's boot code, then the safe-mode check, nothing
slow (main.py starts the app). Holding * at power-on enters safe mode: the app does not
start and the REPL is free.

The boot code (lib/pos/install.py, which tools/deploy copies to the vfs as otaboot.py) runs
before anything is imported from /rom: it finishes or undoes a copy into the romfs partition
that a power cut interrupted, so it must not run from that partition, nor import from it.
"""


class _Store:
    """/state's small files as pos.store.FileStore keeps them (not imported: it is in /rom)."""

    def __init__(self, folder):
        self.folder = folder

    def read(self, name):
        try:
            with open(self.folder + "/" + name, "rb") as stored:
                return stored.read()
        except OSError:
            return None

    def write(self, name, data):
        import os

        path = self.folder + "/" + name
        with open(path + ".new", "wb") as out:
            out.write(data)
        os.rename(path + ".new", path)


def _finish_update():
    import sys

    try:
        otaboot = __import__("otaboot")
    except ImportError:
        return  # deployed without it: no update was ever installed here
    import esp32

    found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="romfs")
    if found:
        store = _Store("/state")
        copying = otaboot.read_state(store)[0] in (otaboot.SAVE, otaboot.COPY, otaboot.REVERT)
        otaboot.boot(store, found[0], "/state")
        if copying:  # the partition changed under the /rom mounted at power-on: again
            import machine

            machine.reset()
    sys.modules.pop("otaboot", None)


_finish_update()

from board import safemode  # noqa: E402  (after the boot code: it is in /rom)

if safemode.check():
    print("OneTill: safe mode (* held at power-on); the app will not start.")
