"""A DUKPT terminal's whole state as bytes, written and checked: the form the host's tests
compare terminals in (a skip and its steps must leave the same state) and search for used
keys (none may be left). The terminal itself never writes it: it keeps its registers in the
state log (pos.statelog), one changed register at a time, so this is off its heap.
"""

import struct

from pos.compat import const, crc32, why
from pos.dukpt import _EXHAUSTED, _WHY, DukptError, DukptTerminal, _lowest, _ones

_KEY_LEN = const(16)
_NUM_REG = const(32)
_MAX_ONES = const(16)

# Serialised terminal state (all integers big-endian):
#   0      version (1)
#   1..8   IK ID
#   9..12  counter of the next transaction; 0 once the counter space is exhausted
#   13..16 in-use bitmap, bit j = register j
#   17..   the 16-byte in-use registers, register 0 first
#   last 4 CRC32 of everything before it
_STATE_VERSION = const(1)
_STATE_HEAD = const(17)
_STATE_MIN = const(21)
MAX_PACKED_SIZE = _STATE_HEAD + _NUM_REG * _KEY_LEN + 4  # every register in use


def _expected_in_use(tc):
    """The in-use bitmap a valid counter implies: its own register and every zero bit above.

    Each zero bit j above the lowest one-bit p holds the key of the counter that turns bit j
    on (derived when its parent was used, not used yet); every register below p was used.
    """
    bitmap = bytearray(4)
    low = _lowest(tc, 0)
    if low < 0:
        return bitmap
    for j in range(low, _NUM_REG):
        i = 3 - (j >> 3)
        mask = 1 << (j & 7)
        if j == low or not tc[i] & mask:
            bitmap[i] |= mask
    return bitmap


def packed_size(terminal):
    return _STATE_HEAD + sum(terminal._in_use) * _KEY_LEN + 4


def pack_into(terminal, out, offset=0):
    """Write the state (layout above) into out at offset; returns the offset after it.
    Writes nothing else, allocates nothing."""
    size = packed_size(terminal) - 4
    view = memoryview(out)[offset : offset + size + 4]
    for i in range(_STATE_HEAD):
        view[i] = 0
    view[0] = _STATE_VERSION
    view[1:9] = terminal.ik_id
    view[9:13] = terminal._tc
    keys = memoryview(terminal._keys)
    pos = _STATE_HEAD
    for j in range(_NUM_REG):
        if terminal._in_use[j]:
            view[16 - (j >> 3)] |= 1 << (j & 7)
            view[pos : pos + _KEY_LEN] = keys[j * _KEY_LEN : (j + 1) * _KEY_LEN]
            pos += _KEY_LEN
    struct.pack_into(">I", view, size, crc32(view[:size]) & 0xFFFFFFFF)
    return offset + size + 4


def to_bytes(terminal):
    """The state to store: only the in-use registers, with a CRC32 (layout above)."""
    out = bytearray(packed_size(terminal))
    pack_into(terminal, out)
    return bytes(out)


def from_bytes(data):
    """The terminal stored by to_bytes(); DukptError unless it is intact and consistent."""
    size = len(data)
    if size < _STATE_MIN:
        raise DukptError(why(_WHY, 8) % size)
    view = memoryview(data)
    if crc32(view[: size - 4]) & 0xFFFFFFFF != struct.unpack_from(">I", data, size - 4)[0]:
        raise DukptError(why(_WHY, 9))
    if data[0] != _STATE_VERSION:
        raise DukptError(why(_WHY, 10) % data[0])
    count = _ones(data, 13)
    if size != _STATE_MIN + count * _KEY_LEN:
        raise DukptError(why(_WHY, 11) % size)
    if _ones(data, 9) > _MAX_ONES:
        raise DukptError(why(_WHY, 12))
    expected = _expected_in_use(view[9:13])
    for i in range(4):
        if data[13 + i] != expected[i]:
            raise DukptError(why(_WHY, 13))
    terminal = DukptTerminal(view[1:9])
    counter = struct.unpack_from(">I", data, 9)[0]
    terminal._set_counter(counter if counter else _EXHAUSTED)
    pos = _STATE_HEAD
    for j in range(_NUM_REG):
        if expected[3 - (j >> 3)] & (1 << (j & 7)):
            terminal._keys[j * _KEY_LEN : (j + 1) * _KEY_LEN] = view[pos : pos + _KEY_LEN]
            terminal._in_use[j] = 1
            pos += _KEY_LEN
    return terminal
