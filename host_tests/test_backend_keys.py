"""The back end's key derivation (tools/host/backend/ingest.py) against pos.dukpt's, and its
record opener against pos.seal's: the fast path must give the very same keys and verdicts."""

import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))

import pytest  # noqa: E402

from pos.derive import derive_initial_key, derive_transaction_key, derive_working_key, ksn_bytes  # noqa: E402
from pos.dukpt import USAGE_DATA_ENCRYPT, USAGE_MAC_GENERATION, DukptError, DukptTerminal  # noqa: E402
from pos.seal import Sealer, SealError  # noqa: E402
from tools.host.backend.ingest import KeyDeriver, open_sealed  # noqa: E402

BDK = bytes(range(16))


def reference_keys(ik_id, counter):
    ksn = ksn_bytes(ik_id, counter)
    key = derive_transaction_key(derive_initial_key(BDK, ik_id), ksn)
    return (
        derive_working_key(key, ksn, USAGE_DATA_ENCRYPT),
        derive_working_key(key, ksn, USAGE_MAC_GENERATION),
    )


def test_cached_paths_give_the_keys_pos_dukpt_gives_in_any_order():
    deriver = KeyDeriver(BDK)
    chance = random.Random(16)
    fleet = [bytes([0xBE, n]) + bytes(6) for n in range(3)]
    counters = list(range(1, 300)) + [0xFFFF0000, 0x80000000, 0x7FFF8000, 1 << 20, 3, 2, 1]
    counters += [chance.choice(range(1, 1 << 20)) for _ in range(200)]
    asked = [(ik_id, counter) for counter in counters for ik_id in fleet]
    chance.shuffle(asked[-300:])
    for ik_id, counter in asked:
        if bin(counter).count("1") > 16:
            continue
        assert deriver.keys(ik_id, counter) == reference_keys(ik_id, counter), (ik_id, counter)


def test_the_terminals_own_keys_are_derived_again():
    ik_id = bytes.fromhex("0102030405060708")
    terminal = DukptTerminal.load_initial_key(derive_initial_key(BDK, ik_id), ik_id)
    deriver = KeyDeriver(BDK)
    for _ in range(100):
        counter, _, keys = terminal.next_keys((USAGE_DATA_ENCRYPT, USAGE_MAC_GENERATION))
        assert deriver.keys(ik_id, counter) == (bytes(keys[0]), bytes(keys[1]))


def test_counters_no_terminal_uses_are_refused_as_pos_dukpt_refuses_them():
    deriver = KeyDeriver(BDK)
    for counter in (0, 0x1FFFF):  # no one-bit; 17 one-bits
        with pytest.raises(DukptError) as fast:
            deriver.keys(bytes(8), counter)
        with pytest.raises(DukptError) as slow:
            reference_keys(bytes(8), counter)
        assert str(fast.value) == str(slow.value)


def test_the_opener_agrees_with_pos_seal_on_good_and_altered_bodies():
    sealer = Sealer()
    data_key, mac_key = reference_keys(bytes(8), 7)
    plain = bytes(range(48))
    body = bytes(sealer.seal(plain, 7, data_key, mac_key))
    assert (
        open_sealed(body, data_key, mac_key)
        == plain
        == bytes(sealer.open(body, *(data_key, mac_key)))
    )
    for altered in (body[:10] + bytes([body[10] ^ 1]) + body[11:], body[:-1], body[:4]):
        with pytest.raises(SealError) as fast:
            open_sealed(altered, data_key, mac_key)
        with pytest.raises(SealError) as slow:
            sealer.open(altered, data_key, mac_key)
        assert str(fast.value) == str(slow.value)
