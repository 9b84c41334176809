"""pos.store: state files replaced whole, by temporary file and rename."""

from expect import scratch
from pos.store import FileStore


def scratch_folder():
    return scratch("store") + "/state"


def test_missing_file_reads_none():
    assert FileStore(scratch_folder()).read("nothing") is None


def test_write_read_replace_remove():
    store = FileStore(scratch_folder())
    store.write("dukpt", b"\x01\x02")
    assert store.read("dukpt") == b"\x01\x02"
    store.write("dukpt", b"\x03" * 600)
    assert store.read("dukpt") == b"\x03" * 600
    store.remove("dukpt")
    assert store.read("dukpt") is None
    store.remove("dukpt")  # removing twice is harmless


def test_leftover_temporary_file_is_ignored():
    folder = scratch_folder()
    store = FileStore(folder)
    store.write("totals", b"old")
    with open(folder + "/totals.new", "wb") as torn:
        torn.write(b"half")  # a write the power cut stopped before its rename
    assert FileStore(folder).read("totals") == b"old"
    store.write("totals", b"new")
    assert store.read("totals") == b"new"
