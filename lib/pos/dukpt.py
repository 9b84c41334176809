"""AES-128 DUKPT (ANSI X9.24-3-2017): the terminal's side (its registers and their update).
The back end's side, the keys rebuilt from the BDK and a KSN, is pos.derive: on the
terminal every function costs heap, and it derives nothing from the BDK."""

import struct

from pos.compat import AES_ECB, aes, const, why

# Key usage indicators: bytes 2-3 of the derivation data.
USAGE_KEY_ENCRYPTION = const(0x0002)
USAGE_PIN_ENCRYPTION = const(0x1000)
USAGE_MAC_GENERATION = const(0x2000)
USAGE_MAC_VERIFICATION = const(0x2001)
USAGE_MAC_BOTH = const(0x2002)
USAGE_DATA_ENCRYPT = const(0x3000)
USAGE_DATA_DECRYPT = const(0x3001)
USAGE_DATA_BOTH = const(0x3002)
USAGE_KEY_DERIVATION = const(0x8000)
USAGE_INITIAL_KEY = const(0x8001)

# Algorithm indicators: bytes 4-5 of the derivation data.
ALG_2TDEA = const(0)
ALG_3TDEA = const(1)
ALG_AES128 = const(2)
ALG_AES192 = const(3)
ALG_AES256 = const(4)
ALG_HMAC = const(5)

_KEY_LEN = const(16)
_IK_ID_LEN = const(8)
_KSN_LEN = const(12)
_NUM_REG = const(32)  # one intermediate derivation key register per counter bit
_MAX_ONES = const(16)  # counters with more one-bits are never used
_KEY_BITS = const(128)

# Only keys that one AES block of derivation output makes (128 bits) are derived here.
_ALGS_128 = (ALG_2TDEA, ALG_AES128, ALG_HMAC)
# The derivation usages stay out: a "working key" with them would mimic a register.
_WORKING_USAGES = (
    USAGE_KEY_ENCRYPTION,
    USAGE_PIN_ENCRYPTION,
    USAGE_MAC_GENERATION,
    USAGE_MAC_VERIFICATION,
    USAGE_MAC_BOTH,
    USAGE_DATA_ENCRYPT,
    USAGE_DATA_DECRYPT,
    USAGE_DATA_BOTH,
)

# Not const(): these pass the ESP32's 31-bit small ints.
_MAX_COUNTER = 0xFFFFFFFF
_EXHAUSTED = 0x100000000  # in-memory counter once every counter is used up

_ZERO_KEY = bytes(_KEY_LEN)


# The messages (and two names of keys), "|" between them, in one bytes constant: each str
# literal longer than about 10 characters would be a heap object of its own (about 35 bytes
# on the 64-bit port).
_WHY = (
    b"%s must be %d bytes, not %d|"  # 0
    b"KSN counter is 0|"  # 1
    b"KSN counter has %d one-bits (at most 16 are used)|"  # 2
    b"algorithm %d needs a key longer than 128 bits|"  # 3
    b"usage 0x%04x is not a working-key usage|"  # 4
    b"counter out of range: %d|"  # 5
    b"DUKPT counters exhausted: load a new initial key|"  # 6
    b"no key register for counter %d: state is corrupt|"  # 7
    b"DUKPT state too short: %d bytes|"  # 8
    b"DUKPT state corrupt: CRC mismatch|"  # 9
    b"DUKPT state version %d not supported|"  # 10
    b"DUKPT state length %d does not match its bitmap|"  # 11
    b"DUKPT state corrupt: counter has more than 16 one-bits|"  # 12
    b"DUKPT state corrupt: registers do not match the counter|"  # 13
    b"initial key|"  # 14
    b"transaction key"  # 15
)


class DukptError(ValueError):
    """Bad key, KSN or counter, corrupt state, or a terminal with no counters left."""


def _check_len(value, length, what):
    """what: the value's name, or its number in _WHY (decoded only for the message)."""
    if len(value) != length:
        what = why(_WHY, what) if isinstance(what, int) else what
        raise DukptError(why(_WHY, 0) % (what, length, len(value)))


def _ones(buf, start):
    """Count the one-bits of the 4-byte counter at buf[start:start + 4]."""
    count = 0
    for i in range(start, start + 4):
        byte = buf[i]
        while byte:
            byte &= byte - 1
            count += 1
    return count


def _lowest(buf, start):
    """Index of the lowest one-bit of the 4-byte counter at buf[start:start + 4], or -1."""
    bit = 0
    for i in range(start + 3, start - 1, -1):
        byte = buf[i]
        if byte:
            while not byte & 1:
                byte >>= 1
                bit += 1
            return bit
        bit += 8
    return -1


def _fill(data, usage, algorithm, ik_id):
    """Write the derivation data up to the counter (X9.24-3-2017 6.3.2)."""
    data[0] = 1  # derivation data version
    data[1] = 1  # key block counter: the first (and only) block of a 128-bit key
    struct.pack_into(">HHH", data, 2, usage, algorithm, _KEY_BITS)
    if usage == USAGE_INITIAL_KEY:
        data[8:16] = ik_id
    else:
        # Other keys take the device half of the IK ID; bytes 12-15 hold the counter.
        data[8:12] = ik_id[4:8]


def _check_working(usage, algorithm):
    if algorithm not in _ALGS_128:
        raise DukptError(why(_WHY, 3) % algorithm)
    if usage not in _WORKING_USAGES:
        raise DukptError(why(_WHY, 4) % usage)


class DukptTerminal:
    """The originating side: 32 key registers, the counter, and the update of X9.24-3-2017.

    Build one with load_initial_key(). The terminal keeps its registers in the state log
    (pos.statelog: each changed register stored before its keys are used, so a power cut
    can only skip a counter); pos.dukptstate writes and checks the whole state as bytes,
    for the host's tests and tools.
    """

    def __init__(self, ik_id):
        _check_len(ik_id, _IK_ID_LEN, "IK ID")
        self.ik_id = bytes(ik_id)
        self._keys = bytearray(_NUM_REG * _KEY_LEN)
        self._in_use = bytearray(_NUM_REG)
        self._tc = bytearray(4)  # the counter big-endian, so bit tests need no 32-bit int
        self._data = bytearray(16)  # derivation data, reused for every derivation
        self._block = bytearray(_KEY_LEN)  # each derived register, before it is stored
        self._counter = _EXHAUSTED

    @classmethod
    def load_initial_key(cls, ik, ik_id):
        """A terminal ready for counter 1 (the standard's Load Initial Key).

        The initial key itself is not kept: register j holds the key of counter 1 << j.
        """
        _check_len(ik, _KEY_LEN, 14)
        terminal = cls(ik_id)
        terminal._set_counter(0)
        terminal._derive(aes(ik, AES_ECB), _NUM_REG, 0)
        terminal._set_counter(1)
        return terminal

    @property
    def counter(self):
        """The counter the next transaction will use (2**32 once all are used up)."""
        return self._counter

    def _set_counter(self, counter):
        if counter > _MAX_COUNTER:
            # The last counter (0xFFFF0000) is used: nothing may be derived any more.
            for j in range(_NUM_REG):
                if self._in_use[j]:
                    self._erase(j)
            counter = _EXHAUSTED
            struct.pack_into(">I", self._tc, 0, 0)
        else:
            struct.pack_into(">I", self._tc, 0, counter)
        self._counter = counter

    def _register(self, j):
        return memoryview(self._keys)[j * _KEY_LEN : (j + 1) * _KEY_LEN]

    def _erase(self, j):
        # Zero the key bytes themselves, not just the flag, so a used key leaves nothing.
        self._keys[j * _KEY_LEN : (j + 1) * _KEY_LEN] = _ZERO_KEY
        self._in_use[j] = 0

    def _current(self):
        """The register of the current counter, after checking that it can be used."""
        if self._counter > _MAX_COUNTER:
            raise DukptError(why(_WHY, 6))
        low = _lowest(self._tc, 0)
        if low < 0 or not self._in_use[low]:
            raise DukptError(why(_WHY, 7) % self._counter)
        return low

    def _derive(self, cipher, top, bottom):
        """Fill registers top-1 down to bottom with the children of the current counter.

        cipher holds the current counter's key; child j is that counter with bit j set.
        """
        data = self._data
        _fill(data, USAGE_KEY_DERIVATION, ALG_AES128, self.ik_id)
        data[12:16] = self._tc
        keys = self._keys
        block = self._block
        for j in range(top - 1, bottom - 1, -1):
            i = 15 - (j >> 3)
            mask = 1 << (j & 7)
            data[i] |= mask
            # Into a block made once, then copied: a memoryview slice per register would
            # be 32 more objects of garbage per sale.
            cipher.encrypt(data, block)
            keys[j * _KEY_LEN : (j + 1) * _KEY_LEN] = block
            data[i] ^= mask
            self._in_use[j] = 1

    def next_keys(self, usages, algorithm=ALG_AES128):
        """Return (counter, ksn, [one working key per usage]) and move on to the next counter.

        usages is a tuple or list. Nothing is used up when a usage or algorithm is refused.
        """
        low = self._current()
        for usage in usages:
            _check_working(usage, algorithm)
        counter = self._counter
        data = self._data
        _fill(data, USAGE_KEY_DERIVATION, algorithm, self.ik_id)  # usage set per key below
        data[12:16] = self._tc
        # One cipher object for the current key serves the working keys and the children:
        # each is 320 bytes of heap in one piece, the largest block a sale asks for.
        cipher = aes(self._register(low), AES_ECB)
        keys = []
        for usage in usages:
            struct.pack_into(">H", data, 2, usage)
            keys.append(cipher.encrypt(data))
        ksn = self.ik_id + bytes(self._tc)
        self._update(low, cipher)
        return counter, ksn, keys

    def _update(self, low, cipher):
        """Update State for Next Transaction: derive the children, then erase the used key.
        cipher holds the current counter's key (register low)."""
        counter = self._counter
        if _ones(self._tc, 0) < _MAX_ONES:
            if low:
                self._derive(cipher, low, 0)
            self._erase(low)
            self._set_counter(counter + 1)
        else:
            # Every child would have 17 one-bits: skip the whole subtree.
            self._erase(low)
            self._set_counter(counter + (1 << low))

    def skip_past(self, used_counter):
        """Advance until counter > used_counter, as repeated next_keys() would, in O(32) steps."""
        if not 0 <= used_counter <= _MAX_COUNTER:
            raise DukptError(why(_WHY, 5) % used_counter)
        while self._counter <= used_counter:
            low = self._current()
            counter = self._counter
            step = 1 << low
            if counter + step - 1 <= used_counter or _ones(self._tc, 0) >= _MAX_ONES:
                # This register's whole subtree is used up (or may not be used): drop it.
                self._erase(low)
                self._set_counter(counter + step)
                continue
            # The first unused counter is below: child j covers counter + 2**j up to
            # counter + 2**(j + 1) - 1. Children under the first one holding an unused counter
            # are used up, so they are not derived at all (next_keys would erase them at once).
            done = used_counter - counter + 1
            child = 0
            while (2 << child) <= done:
                child += 1
            self._derive(aes(self._register(low), AES_ECB), low, child)
            self._erase(low)
            self._set_counter(counter + (1 << child))
