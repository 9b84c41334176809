"""Small state files that must survive a power cut: written to a temporary file, then renamed.

On LittleFS (the ESP32's vfs) and on POSIX a rename replaces the old file atomically, so a
reader finds either the old contents or the new, never a mixture.
"""

import os


class FileStore:
    """Named blobs in one folder (on the device: /state)."""

    def __init__(self, folder):
        self.folder = folder
        _make_folders(folder)

    def _path(self, name):
        return self.folder + "/" + name

    def read(self, name):
        """The stored bytes, or None when the file does not exist."""
        try:
            with open(self._path(name), "rb") as stored:
                return stored.read()
        except OSError:
            return None

    def size(self, name):
        """The file's size in bytes, or None when it does not exist."""
        try:
            return os.stat(self._path(name))[6]
        except OSError:
            return None

    def write(self, name, data):
        path = self._path(name)
        temporary = path + ".new"
        with open(temporary, "wb") as out:
            out.write(data)
            out.flush()  # LittleFS commits on flush; os.sync() does nothing there
        os.rename(temporary, path)

    def remove(self, name):
        try:
            os.remove(self._path(name))
        except OSError:
            pass


def _make_folders(folder):
    path = ""
    for part in folder.split("/"):
        path += part + "/"
        if part:
            try:
                os.mkdir(path[:-1])
            except OSError:
                pass  # it exists (any other fault shows at the first write)
