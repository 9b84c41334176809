"""Verifies LMS and HSS hash-based signatures (RFC 8554) with nothing but hashlib.sha256.

The terminal checks a software release with it (pos.release); the signer is tools/release.
Only the SHA-256 parameter sets with 32-byte hashes are accepted (RFC 8554, section 8):
LM-OTS types 1-4 (LMOTS_SHA256_N32_W1, W2, W4, W8) and LMS types 5-9 (LMS_SHA256_M32_H5 to
H25), HSS with 1 to 8 levels. All integers are big-endian (u32 = 4 bytes).

    HSS public key (60 bytes):  u32 L || LMS public key of the top level
    LMS public key (56 bytes):  u32 lms_type || u32 ots_type || I (16) || T[1] (32)
    HSS signature:              u32 Nspk (= L - 1)
                                || Nspk times: LMS signature || LMS public key of the next level
                                || LMS signature of the message by the bottom level
    LMS signature:              u32 q (leaf index) || LM-OTS signature || u32 lms_type
                                || path: h nodes of 32 bytes, leaf upwards
    LM-OTS signature:           u32 ots_type || C (32) || y: p values of 32 bytes

    ots_type  w  p    signature      lms_type  h   signature (path part)
    1         1  265  8,516 bytes    5         5   164 bytes
    2         2  133  4,292          6         10  324
    3         4  67   2,180          7         15  484
    4         8  34   1,124          8, 9      20, 25

Heap: the signature is read through memoryview slices, never copied; one 55-byte buffer holds
each hash chain's input; the message is hashed as it streams in (Verifier.update), so a
release image never has to sit in the heap. What a verification allocates beyond that is one
hash object and one 32-byte digest per hash, garbage at once (`tools/bench update` measures
the peak). Any malformed, truncated or wrong input makes verify() return False, never raise.
"""

from hashlib import sha256

from pos.compat import const

_N = const(32)  # bytes per hash value (n = m = 32 for every accepted type)
_LMS_PUBLIC_KEY_SIZE = const(56)
HSS_PUBLIC_KEY_SIZE = const(60)
_MAX_LEVELS = const(8)
_D_PBLC = b"\x80\x80"  # domain separators, RFC 8554 section 4.3 and 5.3
_D_MESG = b"\x81\x81"
_D_LEAF = b"\x82\x82"
_D_INTR = b"\x83\x83"
# LM-OTS types 1 to 4 as (w, p, ls); LMS types 5 to 9 have the tree height 5 * (type - 4).
_OTS_PARAMS = ((1, 265, 7), (2, 133, 6), (4, 67, 4), (8, 34, 0))


def _u32(data, offset):
    return int.from_bytes(data[offset : offset + 4], "big")


def _ots_params(ots_type):
    if 1 <= ots_type <= 4:
        return _OTS_PARAMS[ots_type - 1]
    return None


def _lms_height(lms_type):
    return 5 * (lms_type - 4) if 5 <= lms_type <= 9 else 0


def lms_signature_size(ots_type, lms_type):
    """Bytes of an LMS signature of these types (0 for a type this module does not accept)."""
    params = _ots_params(ots_type)
    height = _lms_height(lms_type)
    if params is None or not height:
        return 0
    return 12 + _N * (params[1] + 1) + _N * height


def _lms_signature_length(signature, offset):
    # The length of the LMS signature starting at offset, read from the types it names;
    # 0 when they are unknown or the buffer ends first.
    if offset + 8 > len(signature):
        return 0
    params = _ots_params(_u32(signature, offset + 4))
    if params is None:
        return 0
    type_offset = offset + 8 + _N * (params[1] + 1)
    if type_offset + 4 > len(signature):
        return 0
    length = lms_signature_size(_u32(signature, offset + 4), _u32(signature, type_offset))
    return length if length and offset + length <= len(signature) else 0


class _Lms:
    """One LMS verification (RFC 8554 algorithm 6a with 4b): a public key and a signature,
    both memoryviews, whose message is fed to the hash made by start()."""

    def __init__(self, public_key, signature):
        self.public_key = public_key
        self.signature = signature
        self.valid = (
            len(public_key) == _LMS_PUBLIC_KEY_SIZE
            and len(signature) >= 12
            and _u32(signature, 4) == _u32(public_key, 4)  # the OTS type is the key's
            and len(signature) == lms_signature_size(_u32(public_key, 4), _u32(public_key, 0))
        )
        if self.valid:
            params = _ots_params(_u32(public_key, 4))
            self._type_offset = 8 + _N * (params[1] + 1)
            leaf_count = 1 << _lms_height(_u32(public_key, 0))
            self.valid = (
                _u32(signature, self._type_offset) == _u32(public_key, 0)  # the key's LMS type
                and _u32(signature, 0) < leaf_count
            )

    def start(self):
        """The message hash, fed with I || u32(q) || D_MESG || C: feed it the message."""
        digest = sha256(self.public_key[8:24])
        digest.update(self.signature[0:4])
        digest.update(_D_MESG)
        digest.update(self.signature[8 : 8 + _N])
        return digest

    def finish(self, message_hash):
        """True if the signature holds for the message fed to message_hash."""
        if not self.valid:
            return False
        public_key, signature = self.public_key, self.signature
        w, p, ls = _ots_params(_u32(public_key, 4))
        # Q || Cksm(Q): the checksum makes every digit count (section 4.4).
        digits = bytearray(_N + 2)
        digits[0:_N] = message_hash.digest()
        top = (1 << w) - 1
        checksum = 0
        for index in range(_N * 8 // w):
            checksum += top - _coef(digits, index, w)
        checksum <<= ls
        digits[_N] = checksum >> 8
        digits[_N + 1] = checksum & 0xFF
        # Each y[i] hashed on to the end of its chain gives z[i]; K = H(I||q||D_PBLC||z...).
        chain = bytearray(23 + _N)  # I (16) || u32 q || u16 i || u8 j || tmp (32)
        chain[0:16] = public_key[8:24]
        chain[16:20] = signature[0:4]
        candidate = sha256(chain[0:20])
        candidate.update(_D_PBLC)
        for index in range(p):
            chain[20] = index >> 8
            chain[21] = index & 0xFF
            start = 8 + _N + _N * index
            chain[23:] = signature[start : start + _N]
            for step in range(_coef(digits, index, w), top):
                chain[22] = step
                chain[23:] = sha256(chain).digest()
            candidate.update(memoryview(chain)[23:])
        # The leaf, then up the tree along the path to the root (algorithm 6a, step 4).
        node = (1 << _lms_height(_u32(public_key, 0))) + _u32(signature, 0)
        node_hash = sha256(public_key[8:24])
        node_hash.update(node.to_bytes(4, "big"))
        node_hash.update(_D_LEAF)
        node_hash.update(candidate.digest())
        value = node_hash.digest()
        offset = self._type_offset + 4
        while node > 1:
            sibling = signature[offset : offset + _N]
            node_hash = sha256(public_key[8:24])
            node_hash.update((node >> 1).to_bytes(4, "big"))
            node_hash.update(_D_INTR)
            if node & 1:
                node_hash.update(sibling)
                node_hash.update(value)
            else:
                node_hash.update(value)
                node_hash.update(sibling)
            value = node_hash.digest()
            node >>= 1
            offset += _N
        return value == bytes(public_key[24:56])  # MicroPython compares no memoryview


def _coef(digits, index, w):
    # The index-th w-bit digit of digits, most significant first (section 3.1.3).
    per_byte = 8 // w
    shift = 8 - w * (index % per_byte + 1)
    return (digits[index // per_byte] >> shift) & ((1 << w) - 1)


class Verifier:
    """An HSS signature check whose message streams in: Verifier(public_key, signature),
    update(chunk) as often as needed, then verify() -> bool. A malformed key or signature
    is found at the start and makes verify() False; update() then costs nothing."""

    def __init__(self, public_key, signature):
        public_key = memoryview(public_key)
        try:
            signature = memoryview(signature)
        except TypeError:
            pass  # read piece by piece (pos.update reads it from a file: no 2.5 KiB block)
        self._levels = levels = []  # (LMS public key, LMS signature) from the top level down
        self._hash = None
        if len(public_key) != HSS_PUBLIC_KEY_SIZE or len(signature) < 4:
            return
        level_count = _u32(public_key, 0)
        if not 1 <= level_count <= _MAX_LEVELS or _u32(signature, 0) != level_count - 1:
            return
        key = public_key[4:]
        offset = 4
        for level in range(level_count):
            length = _lms_signature_length(signature, offset)
            if not length:
                return
            levels.append(_Lms(key, signature[offset : offset + length]))
            offset += length
            if level < level_count - 1:
                key = signature[offset : offset + _LMS_PUBLIC_KEY_SIZE]
                offset += _LMS_PUBLIC_KEY_SIZE
        if offset != len(signature):
            return  # trailing bytes: not a signature of this shape
        self._hash = levels[-1].start()

    def update(self, chunk):
        if self._hash is not None:
            self._hash.update(chunk)

    def verify(self):
        """True if every level's signature holds and the bottom one signs the message."""
        levels = self._levels
        if self._hash is None or not levels[-1].finish(self._hash):
            return False
        self._hash = None  # a second verify() must not pass on a hash already finished
        # Each upper level signs the next level's public key (56 bytes, in the signature).
        for level in range(1, len(levels)):
            message_hash = levels[level - 1].start()
            message_hash.update(levels[level].public_key)
            if not levels[level - 1].finish(message_hash):
                return False
        return True


def verify(public_key, signature, message):
    """True if signature is a valid HSS signature of message (bytes) under public_key."""
    verifier = Verifier(public_key, signature)
    verifier.update(message)
    return verifier.verify()
