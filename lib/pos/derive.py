"""AES-128 DUKPT (ANSI X9.24-3-2017): the receiving side, as the back end (and the host's
tools) derive keys: the initial key from the BDK, a transaction key and its working keys from
the initial key and a KSN. Core code (it runs on both runtimes, and the tests check it
against the terminal's pos.dukpt), but never loaded on the terminal, where its functions
would only take heap."""

import struct

from pos.compat import AES_ECB, aes, const, why
from pos.dukpt import (
    _MAX_COUNTER,
    _WHY,
    ALG_AES128,
    USAGE_INITIAL_KEY,
    USAGE_KEY_DERIVATION,
    DukptError,
    _check_len,
    _check_working,
    _fill,
    _ones,
)

_KEY_LEN = const(16)
_IK_ID_LEN = const(8)
_KSN_LEN = const(12)
_MAX_ONES = const(16)


def _check_counter_bytes(buf, start):
    ones = _ones(buf, start)
    if ones == 0:
        raise DukptError(why(_WHY, 1))
    if ones > _MAX_ONES:
        raise DukptError(why(_WHY, 2) % ones)


def ksn_bytes(ik_id, counter):
    """The 12-byte KSN: IK ID, then the counter big-endian."""
    _check_len(ik_id, _IK_ID_LEN, "IK ID")
    if not 0 <= counter <= _MAX_COUNTER:
        raise DukptError(why(_WHY, 5) % counter)
    return bytes(ik_id) + struct.pack(">I", counter)


def ksn_counter(ksn):
    """The transaction counter of a 12-byte KSN."""
    _check_len(ksn, _KSN_LEN, "KSN")
    return struct.unpack_from(">I", ksn, _IK_ID_LEN)[0]


def derive_initial_key(bdk, ik_id):
    """The initial key a terminal is provisioned with, from the BDK (never on the terminal)."""
    _check_len(bdk, _KEY_LEN, "BDK")
    _check_len(ik_id, _IK_ID_LEN, "IK ID")
    data = bytearray(16)
    _fill(data, USAGE_INITIAL_KEY, ALG_AES128, ik_id)
    return aes(bdk, AES_ECB).encrypt(data)


def derive_transaction_key(ik, ksn):
    """The transaction key for a KSN, rebuilt from the initial key as the back end does."""
    _check_len(ik, _KEY_LEN, 14)
    _check_len(ksn, _KSN_LEN, "KSN")
    _check_counter_bytes(ksn, _IK_ID_LEN)
    # A buffer per call, not a shared one: the back end may derive from several threads.
    data = bytearray(16)
    _fill(data, USAGE_KEY_DERIVATION, ALG_AES128, ksn)
    key = ik
    # One derivation per one-bit, from the most significant down: each adds its bit to the
    # counter in the data, so the bytes alone drive the walk (no 32-bit int on the ESP32).
    for i in range(12, 16):
        byte = ksn[i - 4]
        mask = 0x80
        while mask:
            if byte & mask:
                data[i] |= mask
                key = aes(key, AES_ECB).encrypt(data)
            mask >>= 1
    return bytes(key)


def derive_working_key(txn_key, ksn, usage, algorithm=ALG_AES128):
    """A 16-byte working key (data, MAC, PIN ...) from a transaction key."""
    _check_len(txn_key, _KEY_LEN, 15)
    _check_len(ksn, _KSN_LEN, "KSN")
    _check_counter_bytes(ksn, _IK_ID_LEN)
    _check_working(usage, algorithm)
    data = bytearray(16)
    _fill(data, usage, algorithm, ksn)
    data[12:16] = ksn[8:12]
    return aes(txn_key, AES_ECB).encrypt(data)
