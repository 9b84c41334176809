"""pos.card: the digit buffer that is wiped after use, the Luhn check and the keyed card token."""

from binascii import hexlify, unhexlify

from expect import raises
from pos.card import (
    MAX_CARD_DIGITS,
    MAX_CODE_DIGITS,
    MIN_CARD_DIGITS,
    MIN_CODE_DIGITS,
    TOKEN_SIZE,
    DigitBuffer,
    Tokenizer,
    luhn_ok,
)

TOKEN_KEY = b"card-token-key-1"


def _text(buffer):
    return bytes(buffer.view()).decode()


def test_limits():
    assert (MIN_CARD_DIGITS, MAX_CARD_DIGITS) == (12, 19)
    assert (MIN_CODE_DIGITS, MAX_CODE_DIGITS) == (6, 24)
    assert TOKEN_SIZE == 6


def test_push_and_view():
    buffer = DigitBuffer(19)
    assert buffer.length == 0
    assert _text(buffer) == ""
    for ch in "4111":
        assert buffer.push(ch) is True
    assert buffer.length == 4
    assert _text(buffer) == "4111"
    assert bytes(buffer.buf[:4]) == b"4111"
    assert bytes(buffer.buf[4:]) == bytes(15)


def test_push_stops_at_capacity():
    buffer = DigitBuffer(3)
    assert buffer.push("1") and buffer.push("2") and buffer.push("3")
    assert buffer.push("4") is False
    assert buffer.length == 3
    assert _text(buffer) == "123"


def test_backspace_removes_and_zeroes_the_last_digit():
    buffer = DigitBuffer(8)
    assert buffer.backspace() is False  # nothing to remove
    for ch in "123":
        buffer.push(ch)
    assert buffer.backspace() is True
    assert _text(buffer) == "12"
    assert buffer.buf[2] == 0  # the removed digit does not stay in memory
    assert buffer.backspace() and buffer.backspace()
    assert buffer.length == 0
    assert buffer.backspace() is False
    assert bytes(buffer.buf) == bytes(8)


def test_set_takes_digits():
    buffer = DigitBuffer(19)
    assert buffer.set("4111111111111111") is True
    assert buffer.length == 16
    assert _text(buffer) == "4111111111111111"
    assert buffer.set("55") is True  # replaces, and wipes what was there
    assert _text(buffer) == "55"
    assert bytes(buffer.buf[2:]) == bytes(17)
    assert buffer.set("") is True
    assert buffer.length == 0


def test_set_to_exact_capacity_and_beyond():
    buffer = DigitBuffer(4)
    assert buffer.set("1234") is True
    assert _text(buffer) == "1234"
    assert buffer.set("12345") is False
    assert buffer.length == 0
    assert bytes(buffer.buf) == bytes(4)


def test_set_refuses_non_digits_and_wipes():
    buffer = DigitBuffer(19)
    for bad in ("4111 1111", "4111-1111", "41a1", "x", "411111111111111/", ":"):
        buffer.set("999999")
        assert buffer.set(bad) is False, bad
        assert buffer.length == 0
        assert bytes(buffer.buf) == bytes(19), bad  # no digit of the bad read is left


def test_wipe_zeroes_every_byte():
    buffer = DigitBuffer(19)
    buffer.set("4111111111111111")
    buffer.wipe()
    assert buffer.length == 0
    assert bytes(buffer.buf) == bytes(19)
    assert len(buffer.buf) == 19  # the same buffer, overwritten rather than dropped
    assert _text(buffer) == ""


def test_view_is_the_entered_digits_only():
    buffer = DigitBuffer(10)
    buffer.set("12345")
    view = buffer.view()
    assert len(view) == 5
    assert bytes(view) == b"12345"


def test_last_four():
    buffer = DigitBuffer(19)
    buffer.set("4111111111111234")
    assert buffer.last_four() == 1234
    buffer.set("4000056655665556")
    assert buffer.last_four() == 5556
    buffer.set("5105105105100007")
    assert buffer.last_four() == 7  # shown as 0007
    buffer.set("9999")
    assert buffer.last_four() == 9999
    buffer.set("123")
    assert buffer.last_four() == 0  # fewer than four digits
    buffer.wipe()
    assert buffer.last_four() == 0


def test_luhn_valid_numbers():
    for number in (
        b"4111111111111111",
        b"79927398713",
        b"5555555555554444",
        b"378282246310005",
        b"6011111111111117",
        b"0",
        b"00",
        b"18",
    ):
        assert luhn_ok(number), number


def test_luhn_invalid_numbers():
    for number in (
        b"4111111111111112",
        b"4111111111111110",
        b"79927398710",
        b"79927398714",
        b"1111111111111111",
        b"1",
        b"19",
        b"",
    ):
        assert not luhn_ok(number), number


def test_luhn_catches_a_swap_of_neighbours():
    assert luhn_ok(b"4111111111111111")
    assert not luhn_ok(b"1411111111111111")


def test_luhn_over_the_digit_buffer():
    buffer = DigitBuffer(19)
    buffer.set("4111111111111111")
    assert luhn_ok(buffer.view())
    buffer.push("1")  # one digit more: 41111111111111111 fails
    assert not luhn_ok(buffer.view())
    buffer.backspace()
    assert luhn_ok(buffer.view())
    buffer.wipe()
    assert not luhn_ok(buffer.view())  # nothing entered is not a valid number


def _token(tokenizer, text):
    out = bytearray(TOKEN_SIZE)
    result = tokenizer.token(text, out)
    assert result is out
    return bytes(out)


def test_token_is_six_bytes_of_aes_cmac():
    # RFC 4493 example 2: AES-CMAC of one block under the RFC key starts 070a16b46b4d.
    rfc_key = unhexlify("2b7e151628aed2a6abf7158809cf4f3c")
    message = unhexlify("6bc1bee22e409f96e93d7e117393172a")
    assert _token(Tokenizer(rfc_key), message) == unhexlify("070a16b46b4d")
    assert _token(Tokenizer(rfc_key), b"") == unhexlify("bb1d6929e959")  # example 1
    # A card number under a test key (checked against the cryptography package's CMAC).
    token = _token(Tokenizer(TOKEN_KEY), b"4111111111111111")
    assert hexlify(token) == b"6765af9cc66a"


def test_same_number_same_token():
    tokenizer = Tokenizer(TOKEN_KEY)
    first = _token(tokenizer, b"4111111111111111")
    assert len(first) == 6
    assert _token(tokenizer, b"4111111111111111") == first  # reused cipher, same answer
    assert _token(Tokenizer(bytearray(TOKEN_KEY)), b"4111111111111111") == first
    buffer = DigitBuffer(19)
    buffer.set("4111111111111111")
    assert _token(tokenizer, buffer.view()) == first


def test_different_number_or_key_different_token():
    tokenizer = Tokenizer(TOKEN_KEY)
    card = _token(tokenizer, b"4111111111111111")
    assert _token(tokenizer, b"4111111111111112") != card
    assert _token(tokenizer, b"5555555555554444") != card
    assert _token(tokenizer, b"41111111111111111") != card
    assert _token(Tokenizer(b"card-token-key-2"), b"4111111111111111") != card
    assert _token(Tokenizer(bytes(16)), b"4111111111111111") != card


def test_token_writes_only_the_first_six_bytes():
    tokenizer = Tokenizer(TOKEN_KEY)
    out = bytearray(b"\xee" * 10)
    tokenizer.token(b"4111111111111111", out)
    assert bytes(out[:6]) == _token(tokenizer, b"4111111111111111")
    assert bytes(out[6:]) == b"\xee" * 4


def test_tokenizer_key_must_be_16_bytes():
    for key in (b"", bytes(15), bytes(17), bytes(32)):
        exc = raises(ValueError, Tokenizer, key)
        assert "16 bytes" in str(exc)
