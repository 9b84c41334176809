"""pos.screen: 8 rows of 16 columns in one buffer, clipping, alignment, digits, the LCD view."""

from pos.screen import COLS, HINT, ROWS, TITLE, Screen


def test_new_screen_is_blank_with_focus_on_row_1():
    screen = Screen()
    assert ROWS == 8 and COLS == 16 and TITLE == 0 and HINT == 7
    assert len(screen.buf) == 128
    assert bytes(screen.buf) == b" " * 128
    assert screen.focus == 1
    assert screen.text() == [""] * 8


def test_put_writes_one_row_and_returns_the_screen():
    screen = Screen()
    assert screen.put(3, "Cashier PIN") is screen
    assert screen.row(3) == "Cashier PIN"
    for row in range(ROWS):
        if row != 3:
            assert screen.row(row) == ""


def test_put_takes_str_bytes_bytearray_and_memoryview():
    screen = Screen()
    screen.put(1, "str")
    screen.put(2, b"bytes")
    screen.put(3, bytearray(b"bytearray"))
    screen.put(4, memoryview(b"xxmemoryview")[2:])
    assert screen.text()[1:5] == ["str", "bytes", "bytearray", "memoryview"]


def test_put_clips_at_16_columns_without_touching_the_next_row():
    screen = Screen()
    screen.put(2, "next row")
    screen.put(1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert screen.row(1) == "ABCDEFGHIJKLMNOP"
    assert screen.row(2) == "next row"
    screen.put(HINT, "0123456789abcdefXYZ")  # the last row: nothing past the buffer
    assert screen.row(HINT) == "0123456789abcdef"
    assert len(screen.buf) == 128


def test_put_exactly_16_columns_fills_the_row():
    screen = Screen()
    screen.put(5, "0123456789ABCDEF")
    assert screen.row(5) == "0123456789ABCDEF"


def test_put_from_column_0_replaces_the_whole_row():
    screen = Screen()
    screen.put(2, "a long old text")
    screen.put(2, "new")
    assert screen.row(2) == "new"
    screen.put(2, "")
    assert screen.row(2) == ""


def test_put_at_a_column_keeps_the_rest_and_clips():
    screen = Screen()
    screen.put(3, "Wait")
    screen.put(3, "s", 15)
    assert screen.row(3) == "Wait           s"
    screen.put(4, "1234")
    screen.put(4, "XYZ", 14)  # two columns left: "XY"
    assert screen.row(4) == "1234          XY"
    screen.put(4, "ignored", 16)  # starting past the edge writes nothing
    assert screen.row(4) == "1234          XY"
    assert screen.row(5) == ""


def test_put_right_aligns_to_the_edge_and_keeps_the_left_text():
    screen = Screen()
    screen.put(3, "Code")
    screen.put(3, "A1B2C3", right=True)
    assert screen.row(3) == "Code      A1B2C3"
    assert len(screen.row(3)) == 16
    screen.put(4, "7", right=True)
    assert bytes(screen.buf[4 * 16 : 5 * 16]) == b" " * 15 + b"7"


def test_put_right_clips_long_text_to_the_row():
    screen = Screen()
    screen.put(2, "above")
    screen.put(4, "below")
    screen.put(3, "0123456789ABCDEFGHIJ", right=True)
    assert len(screen.row(3)) == 16
    assert screen.row(2) == "above"
    assert screen.row(4) == "below"


def test_a_nul_ends_the_text_as_in_a_padded_text_table_row():
    screen = Screen()
    row = memoryview(b"Link\0\0\0\0up\0\0\0\0\0\0")
    screen.put(1, row[0:8])
    screen.put(1, row[8:16], right=True)
    assert screen.row(1) == "Link" + " " * 10 + "up"
    screen.put(2, b"\0hidden")
    assert screen.row(2) == ""


def test_non_ascii_and_control_characters_show_as_question_marks():
    screen = Screen()
    screen.put(1, b"\x01A\x1fB\x7fC\xffD")
    assert screen.row(1) == "?A?B?C?D"
    screen.put(2, "tab\there")
    assert screen.row(2) == "tab?here"
    # one '?' per character, whatever its length in UTF-8 (2, 3 and 4 bytes here)
    screen.put(3, "Caf\u00e9 Cr\u00eape")
    assert screen.row(3) == "Caf? Cr?pe"
    screen.put(4, "\u20ac5 \U0001f35c!")
    assert screen.row(4) == "?5 ?!"


def test_non_ascii_text_is_clipped_and_aligned_by_characters():
    screen = Screen()
    name = "\u00c9picerie D\u00f6ner Caf\u00e9"  # 20 characters, 23 bytes in UTF-8
    screen.put(1, name)
    assert screen.row(1) == "?picerie D?ner C"
    screen.put(2, name.encode())  # a merchant's label is the UTF-8 bytes of its name
    assert screen.row(2) == "?picerie D?ner C"
    screen.put(3, "x")
    screen.put(3, "d\u00e9j\u00e0", right=True)
    assert screen.row(3) == "x           d?j?"
    screen.put(4, "\u00e9\u00e9\u00e9", 14)
    assert screen.row(4) == "              ??"
    assert screen.row(5) == ""


def test_put_digits_plain_number_ends_at_the_right_edge():
    screen = Screen()
    start = screen.put_digits(2, 1234)
    assert start == 12
    assert screen.row(2) == "            1234"
    assert screen.put_digits(3, 0) == 15
    assert screen.row(3) == "               0"


def test_put_digits_with_two_decimals():
    screen = Screen()
    assert screen.put_digits(1, 1234, 2) == 11
    assert screen.row(1) == "           12.34"
    screen.put_digits(2, 5, 2)
    assert screen.row(2).strip() == "0.05"
    screen.put_digits(3, 0, 2)
    assert screen.row(3).strip() == "0.00"
    screen.put_digits(4, 100, 2)
    assert screen.row(4).strip() == "1.00"
    screen.put_digits(5, 99999, 2)
    assert screen.row(5).strip() == "999.99"


def test_put_digits_with_three_decimals():
    screen = Screen()
    screen.put_digits(1, 1234567, 3)
    assert screen.row(1).strip() == "1234.567"
    screen.put_digits(2, 7, 3)
    assert screen.row(2).strip() == "0.007"
    screen.put_digits(3, 0, 3)
    assert screen.row(3).strip() == "0.000"


def test_put_digits_with_exponent_0_has_no_point():
    screen = Screen()
    screen.put_digits(1, 1500, 0)
    assert screen.row(1).strip() == "1500"
    assert "." not in screen.row(1)


def test_put_digits_keeps_text_left_of_the_number():
    screen = Screen()
    screen.put(3, "EUR")
    screen.put_digits(3, 999999999, 2)
    assert screen.row(3) == "EUR   9999999.99"


def test_put_digits_min_digits_pads_with_zeros():
    screen = Screen()
    screen.put(4, "****")
    assert screen.put_digits(4, 7, 0, 9, 4) == 5
    assert screen.row(4) == "**** 0007"
    screen.put_digits(5, 1234, 0, 9, 4)
    assert screen.row(5) == "     1234"
    screen.put_digits(6, 12345, 0, 16, 3)  # min_digits never cuts a longer number
    assert screen.row(6).strip() == "12345"
    screen.put_digits(1, 5, 2, 16, 4)
    assert screen.row(1).strip() == "00.05"


def test_put_digits_end_col_and_overflow_stay_in_the_row():
    screen = Screen()
    screen.put(1, "above")
    screen.put(3, "below")
    assert screen.put_digits(2, 42, 0, 2) == 0
    assert screen.row(2) == "42"
    assert screen.put_digits(2, 123456, 0, 3) == 0  # too long: cut at the row start
    assert screen.row(1) == "above"
    assert screen.row(3) == "below"
    assert screen.row(2) == "456"
    start = screen.put_digits(0, 10**15, 2)  # 16 digits and a point
    assert start == 0
    assert len(screen.row(0)) == 16
    assert screen.row(1) == "above"


def test_row_text_and_str():
    screen = Screen()
    screen.put(TITLE, "Noodle Bar")
    screen.put(HINT, "#OK *back  ")
    assert screen.row(HINT) == "#OK *back"  # trailing spaces removed
    text = screen.text()
    assert len(text) == 8
    assert text[0] == "Noodle Bar" and text[7] == "#OK *back"
    assert str(screen) == "\n".join(text)
    assert str(screen).count("\n") == 7


def test_clear_blanks_everything_and_resets_focus():
    screen = Screen()
    for row in range(ROWS):
        screen.put(row, "row text")
    screen.focus = 4
    screen.clear()
    assert bytes(screen.buf) == b" " * 128
    assert screen.focus == 1


def test_lcd_rows_are_title_focus_rows_and_hint():
    screen = Screen()
    for row in range(ROWS):
        screen.put(row, "row %d" % row)
    assert screen.lcd_rows() == ["row 0", "row 1", "row 2", "row 7"]
    screen.focus = 2
    assert screen.lcd_rows() == ["row 0", "row 2", "row 3", "row 7"]
    screen.focus = 5
    assert screen.lcd_rows() == ["row 0", "row 5", "row 6", "row 7"]


def test_lcd_rows_show_the_amount_screen():
    screen = Screen()
    screen.put(TITLE, "Noodle Bar")
    screen.put(2, "Sale amount")
    screen.put(3, "EUR")
    screen.put_digits(3, 1234, 2)
    screen.put(HINT, "#OK B del *back")
    screen.focus = 2
    rows = screen.lcd_rows()
    assert rows == ["Noodle Bar", "Sale amount", "EUR        12.34", "#OK B del *back"]
    for line in rows:
        assert len(line) <= 16  # fits a 20x4 LCD
