"""Test helper: the back end's side of a seal, from the initial key, with a key cache."""

from testkeys import IK, IK_ID, STORAGE_KEY  # noqa: F401  (the tests import them from here)

from pos.derive import derive_transaction_key, derive_working_key, ksn_bytes
from pos.dukpt import USAGE_DATA_ENCRYPT, USAGE_MAC_GENERATION
from pos.record import Record
from pos.seal import Sealer

# Keys of counters below _CACHED, derived once, for the power-cut test, which opens the same
# records hundreds of times. One buffer, made by enable_key_cache() before the test's loop
# (so it never fragments a 96 KiB heap) and by nobody else (so other tests keep the room).
_CACHED = 256
_cache = None
_have = None
_sealer = Sealer()


def enable_key_cache():
    global _cache, _have
    if _cache is None:
        _cache = bytearray(_CACHED * 32)
        _have = bytearray(_CACHED)


def keys_for(counter, ik=IK, ik_id=IK_ID):
    use_cache = _cache is not None and ik == IK and ik_id == IK_ID and counter < _CACHED
    if use_cache and _have[counter]:
        view = memoryview(_cache)[counter * 32 : counter * 32 + 32]
        return view[:16], view[16:]
    ksn = ksn_bytes(ik_id, counter)
    transaction_key = derive_transaction_key(ik, ksn)
    data_key = derive_working_key(transaction_key, ksn, USAGE_DATA_ENCRYPT)
    mac_key = derive_working_key(transaction_key, ksn, USAGE_MAC_GENERATION)
    if use_cache:
        _cache[counter * 32 : counter * 32 + 16] = data_key
        _cache[counter * 32 + 16 : counter * 32 + 32] = mac_key
        _have[counter] = 1
    return data_key, mac_key


def open_frame(counter, frame):
    """Open a queued frame (length byte, body, CRC) as the back end would."""
    data_key, mac_key = keys_for(counter)
    return bytes(_sealer.open(bytes(frame[1:-4]), data_key, mac_key))


def open_record(counter, frame):
    return Record.unpack(open_frame(counter, frame))
