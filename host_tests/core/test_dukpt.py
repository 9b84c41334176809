"""pos.dukpt: X9.24-3-2017 known answers, and the terminal's registers against the host side."""

import struct
from binascii import unhexlify

from expect import raises
from pos.compat import crc32
from pos.derive import (
    derive_initial_key,
    derive_transaction_key,
    derive_working_key,
    ksn_bytes,
    ksn_counter,
)
from pos.dukpt import (
    ALG_2TDEA,
    ALG_3TDEA,
    ALG_AES128,
    ALG_AES192,
    ALG_AES256,
    ALG_HMAC,
    USAGE_DATA_DECRYPT,
    USAGE_DATA_ENCRYPT,
    USAGE_INITIAL_KEY,
    USAGE_KEY_DERIVATION,
    USAGE_MAC_GENERATION,
    USAGE_PIN_ENCRYPTION,
    DukptError,
    DukptTerminal,
)
from pos.dukptstate import from_bytes, to_bytes

# ANSI X9.24-3-2017 supplement test vectors, as quoted in openemv/dukpt
# test/dukpt_aes128_test.c: AES-128 BDK, IK ID and the initial key it gives.
BDK = unhexlify("FEDCBA9876543210F1F1F1F1F1F1F1F1")
IK_ID = unhexlify("1234567890123456")
IK = unhexlify("1273671EA26AC29AFA4D1084127652A1")

# Same source, the first eight KSNs (counters 1 to 8), each with its transaction key, PIN key
# (usage 0x1000), MAC-generation key (0x2000) and data-encryption key (0x3000), all AES-128
# ("middle of page 2").
FIRST_EIGHT = (
    (
        "4F21B565BAD9835E112B6465635EAE44",
        "AF8CB133A78F8DC2D1359F18527593FB",
        "A2DC23DE6FDE0824A2BC321E08E4B8B7",
        "A35C412EFD41FDB98B69797C02DCD08F",
    ),
    (
        "2F34D68DE10F68D38091A73B9E7C437C",
        "D30BDC73EC9714B000BEC66BDB7B6D09",
        "484C3B06E8562704528CD5B46FB12FB6",
        "D639514AA33AC43AD9229E433D6D4E5B",
    ),
    (
        "031504E530365CF81264238540518318",
        "7D69F01F3B45449F62C7816ECE723268",
        "A5DF7D9D800CA769766F0C77CA4E6E6C",
        "EF17F6AB45B4820C93A3DCB21BC491AD",
    ),
    (
        "0EEFC7ADA628BA68878DA9165A8A1887",
        "91A0588318EC2673214271F70137896E",
        "E6E4679647D8A9057C1FC15537CB4C4E",
        "B3BD44C08BB6BA27C3BB4711D7D70387",
    ),
    (
        "C2A7AC328A5DA2D6002D62465BFC028B",
        "35A43BC9EFEB09C756204B57E3FB7D4D",
        "0588185FE1FF8C7E22FAD78C1C61F065",
        "CA02DF6F30B39E14BD0B4A30E460920F",
    ),
    (
        "D30F7D9351DA58448A2F5E92B4EE3B7D",
        "02DCC6CD1201A3A2CA7099559C862123",
        "7B60F72A5639C0EE7EB2100FA80BB793",
        "C9B8A7C4E486180B2229115164F0B293",
    ),
    (
        "A8253CEED9AC042C54F75D35C8352278",
        "6ECF912F3B18CA11A7A27BB60705FD09",
        "BAA08CA263C69525BC6B1BA8F4275D69",
        "0FA8F1F0A2DD7B1005A862D77CDED698",
    ),
    (
        "718EE6CF0B27E53D5F7AF99C4D8146A2",
        "4D9DF3FBEE3448FC3E676D04320A90F5",
        "6FD572E5D59E618875F193484F9178FB",
        "650F34204ABD4E57764D61AC3D266FB1",
    ),
)

# Same source, transaction keys around the rollover past 0x1FFFF ("page 5"). The supplement
# also lists 0x1FFFF, which has 17 one-bits: a terminal never uses it, so it is left out.
ROLLOVER = (
    (0x0001FFFE, "E21E8C8D347F8561A2BE752DAA85A111"),
    (0x00020000, "F7AE9025468A25D37B7249CFFED224C8"),
    (0x00020001, "692C8EA4013645135B36497131DF9D2C"),
)

# Same source, the last four transaction keys ("middle of page 6"): 0xFFFF0000 is the last
# counter with at most 16 one-bits.
LAST_FOUR = (
    (0xFFFE2000, "48E585B694EB0B18D5C35443E163C0BA"),
    (0xFFFE4000, "396C2C7CA1EA701C03B86B7D41F0C562"),
    (0xFFFE8000, "0387625F189B58AE03EF0E8CCA41105E"),
    (0xFFFF0000, "F6BA59389BD14A9855BE9727E7C52E3C"),
)

USAGES = (USAGE_DATA_ENCRYPT, USAGE_MAC_GENERATION)


def _ones(counter):
    return bin(counter).count("1")


def _fresh():
    return DukptTerminal.load_initial_key(IK, IK_ID)


def _host_keys(counter):
    ksn = ksn_bytes(IK_ID, counter)
    txn_key = derive_transaction_key(IK, ksn)
    return [derive_working_key(txn_key, ksn, usage) for usage in USAGES]


def test_initial_key_matches_supplement():
    assert derive_initial_key(BDK, IK_ID) == IK


def test_ksn_layout():
    assert ksn_bytes(IK_ID, 1) == unhexlify("123456789012345600000001")
    assert ksn_bytes(IK_ID, 0xFFFF0000) == unhexlify("1234567890123456FFFF0000")
    assert ksn_counter(unhexlify("123456789012345600020001")) == 0x20001
    assert ksn_counter(ksn_bytes(IK_ID, 0xFFFE8000)) == 0xFFFE8000


def test_first_eight_transaction_keys():
    for index, row in enumerate(FIRST_EIGHT):
        ksn = ksn_bytes(IK_ID, index + 1)
        assert derive_transaction_key(IK, ksn) == unhexlify(row[0])


def test_first_eight_working_keys():
    for index, row in enumerate(FIRST_EIGHT):
        ksn = ksn_bytes(IK_ID, index + 1)
        txn_key = unhexlify(row[0])
        assert derive_working_key(txn_key, ksn, USAGE_PIN_ENCRYPTION) == unhexlify(row[1])
        assert derive_working_key(txn_key, ksn, USAGE_MAC_GENERATION) == unhexlify(row[2])
        assert derive_working_key(txn_key, ksn, USAGE_DATA_ENCRYPT) == unhexlify(row[3])
        assert derive_working_key(txn_key, ksn, USAGE_DATA_ENCRYPT, ALG_AES128) == unhexlify(
            row[3]
        )


def test_rollover_and_last_transaction_keys():
    for counter, key in ROLLOVER + LAST_FOUR:
        assert derive_transaction_key(IK, ksn_bytes(IK_ID, counter)) == unhexlify(key)


def test_working_key_depends_on_usage_and_algorithm():
    ksn = ksn_bytes(IK_ID, 1)
    txn_key = unhexlify(FIRST_EIGHT[0][0])
    aes_key = derive_working_key(txn_key, ksn, USAGE_MAC_GENERATION)
    hmac_key = derive_working_key(txn_key, ksn, USAGE_MAC_GENERATION, ALG_HMAC)
    assert len(hmac_key) == 16
    assert hmac_key != aes_key
    assert derive_working_key(txn_key, ksn, USAGE_DATA_DECRYPT) != unhexlify(FIRST_EIGHT[0][3])


def test_terminal_matches_supplement_in_sequence():
    terminal = _fresh()
    assert terminal.counter == 1
    assert terminal.ik_id == IK_ID
    usages = (USAGE_DATA_ENCRYPT, USAGE_MAC_GENERATION, USAGE_PIN_ENCRYPTION)
    for index, row in enumerate(FIRST_EIGHT):
        counter, ksn, keys = terminal.next_keys(usages)
        assert counter == index + 1
        assert ksn == ksn_bytes(IK_ID, counter)
        assert keys == [unhexlify(row[3]), unhexlify(row[2]), unhexlify(row[1])]
    assert terminal.counter == 9


def test_terminal_matches_host_for_first_transactions():
    terminal = _fresh()
    for expected in range(1, 71):
        counter, ksn, keys = terminal.next_keys(USAGES)
        assert counter == expected
        assert keys == _host_keys(counter)


def test_terminal_reaches_rollover_vectors():
    terminal = _fresh()
    terminal.skip_past(0x1FFFD)
    assert terminal.counter == 0x1FFFE
    for counter, key in ROLLOVER:
        got, ksn, keys = terminal.next_keys(USAGES)
        assert got == counter
        txn_key = unhexlify(key)
        assert keys == [derive_working_key(txn_key, ksn, usage) for usage in USAGES]


def test_terminal_ends_after_last_counter():
    terminal = _fresh()
    terminal.skip_past(0xFFFE1FFF)
    for counter, key in LAST_FOUR:
        got, ksn, keys = terminal.next_keys((USAGE_MAC_GENERATION,))
        assert got == counter
        assert keys == [derive_working_key(unhexlify(key), ksn, USAGE_MAC_GENERATION)]
    assert terminal.counter > 0xFFFFFFFF
    raises(DukptError, terminal.next_keys, USAGES)
    # The exhausted state survives a round trip and holds no key.
    state = to_bytes(terminal)
    assert len(state) == 21
    again = from_bytes(state)
    assert again.counter == terminal.counter
    raises(DukptError, again.next_keys, USAGES)
    again.skip_past(0xFFFFFFFF)  # nothing left to skip: harmless


def test_skip_to_the_end_exhausts():
    terminal = _fresh()
    terminal.skip_past(0xFFFFFFFF)
    raises(DukptError, terminal.next_keys, USAGES)
    terminal = _fresh()
    terminal.skip_past(0xFFFF0000)
    raises(DukptError, terminal.next_keys, USAGES)


def _walk(start_used, end_used, expected=None):
    """Step through (start_used, end_used] with next_keys and compare with skip_past."""
    terminal = _fresh()
    terminal.skip_past(start_used)
    counters = []
    while terminal.counter <= end_used:
        counter, _, keys = terminal.next_keys(USAGES)
        assert _ones(counter) <= 16
        assert keys == _host_keys(counter)
        counters.append(counter)
    if expected is None:
        expected = [c for c in range(start_used + 1, end_used + 1) if _ones(c) <= 16]
    assert counters == expected
    jumped = _fresh()
    jumped.skip_past(end_used)
    assert jumped.counter == terminal.counter
    assert to_bytes(jumped) == to_bytes(terminal)
    return terminal


def test_skip_past_equals_stepping_from_the_start():
    stepped = _fresh()
    for used in (0, 1, 2, 5, 16, 17, 31, 64, 99, 130):
        while stepped.counter <= used:
            stepped.next_keys(USAGES)
        jumped = _fresh()
        jumped.skip_past(used)
        assert jumped.counter == used + 1
        assert to_bytes(jumped) == to_bytes(stepped)


def test_skip_past_equals_stepping_across_16_one_bits():
    # 0xFFFF and 0x1FFFx have 16 one-bits; 0x1FFFF and its like have 17 and are skipped.
    _walk(0xFFF8, 0x10002)
    _walk(0x1FFE6, 0x20002)
    # Under 0x7FFF0000 (15 one-bits) only its sixteen one-bit children are left.
    expected = [0x7FFF0000] + [0x7FFF0000 | (1 << j) for j in range(16)]
    _walk(0x7FFEFFFF, 0x80000001, expected + [0x80000000, 0x80000001])


def test_skip_past_in_steps_equals_one_jump():
    terminal = _fresh()
    for used in (3, 200, 0x1FFE0, 0x1FFFD, 0x7FFF0003, 0xFFFE3000):
        terminal.skip_past(used)
        assert terminal.counter > used
        jumped = _fresh()
        jumped.skip_past(used)
        assert jumped.counter == terminal.counter
        assert to_bytes(jumped) == to_bytes(terminal)
    assert terminal.counter == 0xFFFE4000
    terminal.skip_past(5)  # already past: nothing changes
    assert terminal.counter == 0xFFFE4000


def test_used_keys_leave_no_trace():
    terminal = _fresh()
    state = to_bytes(terminal)
    assert IK not in state
    used = []
    for _ in range(20):
        counter, ksn, _ = terminal.next_keys(USAGES)
        used.append(derive_transaction_key(IK, ksn))
        state = to_bytes(terminal)
        registers = bytes(terminal._keys)  # RAM too: erasing zeroes the bytes, not just a flag
        for txn_key in used:
            assert txn_key not in state
            assert txn_key not in registers
    # The next counter's key is there: the state is not empty by accident.
    assert derive_transaction_key(IK, ksn_bytes(IK_ID, terminal.counter)) in state


def test_skipped_keys_leave_no_trace():
    terminal = _fresh()
    terminal.skip_past(0x1FFFD)
    state = to_bytes(terminal)
    for counter in (0x1FFF8, 0x1FFFC, 0x1FFFD):
        assert derive_transaction_key(IK, ksn_bytes(IK_ID, counter)) not in state
    assert derive_transaction_key(IK, ksn_bytes(IK_ID, 0x1FFFE)) in state


def test_state_round_trip():
    terminal = _fresh()
    state = to_bytes(terminal)
    assert len(state) == 17 + 32 * 16 + 4
    for _ in range(11):
        terminal.next_keys(USAGES)
    state = to_bytes(terminal)
    copy = from_bytes(state)
    assert copy.counter == terminal.counter == 12
    assert copy.ik_id == IK_ID
    assert to_bytes(copy) == state
    assert to_bytes(from_bytes(bytearray(state))) == state
    assert copy.next_keys(USAGES) == terminal.next_keys(USAGES)


def test_corrupt_state_is_rejected():
    terminal = _fresh()
    for _ in range(5):
        terminal.next_keys(USAGES)
    state = to_bytes(terminal)
    for pos in range(len(state)):
        bad = bytearray(state)
        bad[pos] ^= 0x01
        raises(DukptError, from_bytes, bad)
    raises(DukptError, from_bytes, state[:-1])
    raises(DukptError, from_bytes, state + b"\x00")
    raises(DukptError, from_bytes, state[:20])
    raises(DukptError, from_bytes, b"")


def _resealed(body):
    return bytes(body) + struct.pack(">I", crc32(bytes(body)) & 0xFFFFFFFF)


def test_inconsistent_state_with_good_crc_is_rejected():
    terminal = _fresh()
    terminal.next_keys(USAGES)
    body = bytearray(to_bytes(terminal)[:-4])
    wrong_version = bytearray(body)
    wrong_version[0] = 2
    raises(DukptError, from_bytes, _resealed(wrong_version))
    # Counter 3 claims register 0 in use, but the bitmap is counter 2's.
    wrong_counter = bytearray(body)
    wrong_counter[12] = 3
    raises(DukptError, from_bytes, _resealed(wrong_counter))
    # A counter with 17 one-bits never occurs.
    many_ones = bytearray(body)
    many_ones[9:13] = b"\x00\x01\xff\xff"
    raises(DukptError, from_bytes, _resealed(many_ones))
    assert from_bytes(_resealed(body)).counter == 2


def test_bad_input_is_rejected():
    ksn = ksn_bytes(IK_ID, 1)
    txn_key = unhexlify(FIRST_EIGHT[0][0])
    raises(DukptError, derive_initial_key, BDK[:15], IK_ID)
    raises(DukptError, derive_initial_key, BDK + BDK, IK_ID)
    raises(DukptError, derive_initial_key, BDK, IK_ID[:7])
    raises(DukptError, derive_transaction_key, IK[:15], ksn)
    raises(DukptError, derive_transaction_key, IK, ksn[:11])
    raises(DukptError, derive_transaction_key, IK, ksn_bytes(IK_ID, 0))
    raises(DukptError, derive_transaction_key, IK, ksn_bytes(IK_ID, 0x1FFFF))
    raises(DukptError, derive_transaction_key, IK, ksn_bytes(IK_ID, 0xFFFF0001))
    raises(DukptError, derive_working_key, txn_key[:8], ksn, USAGE_DATA_ENCRYPT)
    raises(DukptError, derive_working_key, txn_key, ksn + b"\x00", USAGE_DATA_ENCRYPT)
    raises(DukptError, derive_working_key, txn_key, ksn, USAGE_KEY_DERIVATION)
    raises(DukptError, derive_working_key, txn_key, ksn, USAGE_INITIAL_KEY)
    raises(DukptError, derive_working_key, txn_key, ksn, 0x4000)
    for algorithm in (ALG_3TDEA, ALG_AES192, ALG_AES256, 6):
        raises(ValueError, derive_working_key, txn_key, ksn, USAGE_DATA_ENCRYPT, algorithm)
    assert len(derive_working_key(txn_key, ksn, USAGE_DATA_ENCRYPT, ALG_2TDEA)) == 16
    raises(DukptError, ksn_bytes, IK_ID[:7], 1)
    raises(DukptError, ksn_bytes, IK_ID, 0x100000000)
    raises(DukptError, ksn_bytes, IK_ID, -1)
    raises(DukptError, ksn_counter, ksn[:11])
    raises(DukptError, DukptTerminal.load_initial_key, IK[:15], IK_ID)
    raises(DukptError, DukptTerminal.load_initial_key, IK, IK_ID + b"\x00")
    terminal = _fresh()
    raises(DukptError, terminal.next_keys, (USAGE_KEY_DERIVATION,))
    raises(DukptError, terminal.next_keys, USAGES, ALG_AES256)
    assert terminal.counter == 1  # a refused call uses no counter
    raises(DukptError, terminal.skip_past, -1)
    raises(DukptError, terminal.skip_past, 0x100000000)
