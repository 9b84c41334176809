"""The PIN lockout kept across restarts, so a power cycle gives no more tries (issue 13: with
the count in RAM, all 10,000 PINs fell to a few thousand restarts).

One small file in the state folder, sealed with the device storage key (pos.seal's
StateSealer: a random IV, AES-CBC, AES-CMAC), written through the store's temporary file and
rename, so a power cut leaves the old contents or the new:

    "lockout":  format (1) = 1 | tries (1) | locks in a row (1) | lock (4, big-endian)

tries: PINs counted wrong since the last good one (pos.terminal counts a PIN as wrong, and
has it written here, before it checks it, and takes the count back for a known PIN); locks
in a row: the locks since the last good login (each doubles the next); lock: the seconds of
the lock in force when it was written, 0 for none.

Written only when the count or the lock changes: a PIN entered (twice for a good one: before
the check and after), a lock, its end. A sale writes nothing. Loaded for those moments and
at start, then unloaded (pos.app), so it takes no heap while the terminal sells.

After a restart a lock in force starts again whole: how long it already ran is not known
(ticks start again at zero, and the wall clock is not to be trusted for it: an unset clock
may be set by NTP, which anyone on the network can answer), and a lock may grow longer by
a restart, never shorter. Tries counted up to the lock (a cut during the lock's own write)
lock at start. A file that does not open (altered, or another terminal's) locks too.
"""

import struct

from pos.compat import const
from pos.seal import SealError, StateSealer

# Private constants and the file named by a literal that is also the module's name: no name
# of its own to intern, since MicroPython keeps every new name (a qstr) for good.
_FORMAT = const(1)
_MAX_TRIES = const(3)  # pos.terminal's _MAX_WRONG_PINS


def save(store, storage_key, terminal):
    """Write the terminal's count and lock (the lock's remaining seconds, rounded up)."""
    lock_s = 0
    if terminal.locked_until is not None:
        from pos.compat import ticks_diff

        lock_s = max(1, (ticks_diff(terminal.locked_until, terminal.now_ms) + 999) // 1000)
    data = struct.pack(
        ">BBBI", _FORMAT, min(terminal.wrong_pins, 255), min(terminal.lock_count, 255), lock_s
    )
    store.write("lockout", StateSealer(storage_key).seal(data))


def restore(store, storage_key, terminal, now_ms):
    """Put the stored count and lock back on a terminal just made (now_ms: the ticks its
    first tick will carry). Returns a fault line for the log, or None."""
    blob = store.read("lockout")
    if blob is None:
        return None
    fault = None
    try:
        data = StateSealer(storage_key).open(blob)
        if len(data) != 7 or data[0] != _FORMAT:
            raise SealError("unknown lockout format")
        _, tries, locks, lock_s = struct.unpack(">BBBI", data)
    except (SealError, ValueError) as exc:
        fault = "lockout file unusable (%s): login locked" % (exc,)
        tries, locks, lock_s = _MAX_TRIES, 0, 0
    terminal.now_ms = now_ms
    terminal.lock_count = locks
    terminal.wrong_pins = tries
    if lock_s:
        terminal.locked_until = now_ms + lock_s * 1000
    elif tries >= _MAX_TRIES:
        terminal.wrong_pin()  # the lock that the tries earned (and it is written)
    terminal.effects.clear()
    return fault
