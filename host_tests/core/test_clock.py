"""pos.clock: Unix seconds to local civil time, the merchant's day, and "time not set"."""

from pos.clock import CLOCK_SET_AFTER, civil, format_datetime, is_set, local_day

DAY = 86400
T_2026_11_27_0000 = 1795737600  # 2026-11-27 00:00:00 UTC
T_2024_12_31_235959 = 1735689599
T_2000_02_29_1200 = 951825600


def test_epoch():
    assert civil(0) == (1970, 1, 1, 0, 0, 0)
    assert civil(DAY - 1) == (1970, 1, 1, 23, 59, 59)
    assert civil(DAY) == (1970, 1, 2, 0, 0, 0)


def test_leap_day_2000():
    assert civil(T_2000_02_29_1200) == (2000, 2, 29, 12, 0, 0)
    assert civil(T_2000_02_29_1200 - 12 * 3600 - 1) == (2000, 2, 28, 23, 59, 59)
    assert civil(T_2000_02_29_1200 + 12 * 3600) == (2000, 3, 1, 0, 0, 0)


def test_last_second_of_2024():
    assert civil(T_2024_12_31_235959) == (2024, 12, 31, 23, 59, 59)
    assert civil(T_2024_12_31_235959 + 1) == (2025, 1, 1, 0, 0, 0)
    assert civil(T_2024_12_31_235959 - 31 * DAY + 1) == (2024, 12, 1, 0, 0, 0)


def test_2026_11_27_utc():
    assert civil(T_2026_11_27_0000) == (2026, 11, 27, 0, 0, 0)
    assert civil(T_2026_11_27_0000 + 14 * 3600 + 5 * 60 + 9) == (2026, 11, 27, 14, 5, 9)


def test_positive_offset_crosses_midnight_forward():
    late = T_2026_11_27_0000 + 23 * 3600 + 30 * 60  # 23:30 UTC
    assert civil(late, 0) == (2026, 11, 27, 23, 30, 0)
    assert civil(late, 60) == (2026, 11, 28, 0, 30, 0)
    assert civil(late - 1800, 60) == (2026, 11, 28, 0, 0, 0)
    assert civil(late - 1801, 60) == (2026, 11, 27, 23, 59, 59)


def test_negative_offset_crosses_midnight_backward():
    early = T_2026_11_27_0000 + 2 * 3600  # 02:00 UTC
    assert civil(early, -300) == (2026, 11, 26, 21, 0, 0)
    assert civil(T_2026_11_27_0000 + 5 * 3600, -300) == (2026, 11, 27, 0, 0, 0)
    assert civil(T_2026_11_27_0000 + 5 * 3600 - 1, -300) == (2026, 11, 26, 23, 59, 59)


def test_offset_crosses_a_year_and_a_leap_day():
    assert civil(T_2024_12_31_235959, 60) == (2025, 1, 1, 0, 59, 59)
    assert civil(T_2024_12_31_235959 + 1, -300) == (2024, 12, 31, 19, 0, 0)
    assert civil(T_2000_02_29_1200 + 12 * 3600, -60) == (2000, 2, 29, 23, 0, 0)
    assert civil(0, -720) == (1969, 12, 31, 12, 0, 0)
    assert civil(0, 840) == (1970, 1, 1, 14, 0, 0)


def _days_in_month(year, month):
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def test_every_day_from_1970_to_2101_against_a_counted_calendar():
    year, month, day = 1970, 1, 1
    seconds = 0
    noon = 12 * 3600 + 34 * 60 + 56
    while year < 2101:
        assert civil(seconds + noon) == (year, month, day, 12, 34, 56), seconds
        seconds += DAY
        day += 1
        if day > _days_in_month(year, month):
            day = 1
            month += 1
            if month > 12:
                month = 1
                year += 1
    assert civil(seconds) == (2101, 1, 1, 0, 0, 0)
    assert civil(4107542400) == (2100, 3, 1, 0, 0, 0)  # 2100 is not a leap year


def test_local_day():
    assert local_day(0) == 0
    assert local_day(DAY - 1) == 0
    assert local_day(DAY) == 1
    assert local_day(T_2026_11_27_0000) == T_2026_11_27_0000 // DAY


def test_local_day_across_midnight_with_offsets():
    today = T_2026_11_27_0000 // DAY
    late = T_2026_11_27_0000 + 23 * 3600 + 30 * 60  # 23:30 UTC: 00:30 tomorrow at +60
    assert local_day(late, 0) == today
    assert local_day(late, 60) == today + 1
    assert local_day(late - 1801, 60) == today
    early = T_2026_11_27_0000 + 2 * 3600  # 02:00 UTC: 21:00 yesterday at -300
    assert local_day(early, 0) == today
    assert local_day(early, -300) == today - 1
    assert local_day(T_2026_11_27_0000 + 5 * 3600, -300) == today
    assert local_day(T_2026_11_27_0000 + 5 * 3600 - 1, -300) == today - 1


def test_local_day_agrees_with_civil():
    for offset in (-720, -300, 0, 60, 840):
        for t in (T_2026_11_27_0000 - 1, T_2026_11_27_0000, T_2026_11_27_0000 + 43200):
            day = local_day(t, offset)
            assert civil(day * DAY) == civil(t, offset)[:3] + (0, 0, 0)


def test_is_set():
    assert CLOCK_SET_AFTER == 1700000000
    assert not is_set(0)
    assert not is_set(CLOCK_SET_AFTER - 1)
    assert is_set(CLOCK_SET_AFTER)
    assert is_set(T_2026_11_27_0000)


def test_format_datetime():
    t = T_2026_11_27_0000 + 14 * 3600 + 5 * 60 + 59
    assert format_datetime(t) == "2026-11-27 14:05"  # seconds are not shown or rounded
    assert format_datetime(t, 60) == "2026-11-27 15:05"
    assert format_datetime(t, -300) == "2026-11-27 09:05"
    late = T_2026_11_27_0000 + 23 * 3600 + 30 * 60
    assert format_datetime(late, 60) == "2026-11-28 00:30"
    assert format_datetime(T_2026_11_27_0000 + 2 * 3600, -300) == "2026-11-26 21:00"
    assert format_datetime(T_2024_12_31_235959) == "2024-12-31 23:59"


def test_format_datetime_pads_fields():
    t = 1709254800 + 3 * 60  # 2024-03-01 01:03 UTC
    assert format_datetime(t) == "2024-03-01 01:03"
    assert len(format_datetime(t)) == 16


def test_time_not_set():
    assert format_datetime(0) == "time not set"
    assert format_datetime(0, 840) == "time not set"
    assert format_datetime(T_2000_02_29_1200) == "time not set"
    assert format_datetime(CLOCK_SET_AFTER - 1) == "time not set"
    assert format_datetime(CLOCK_SET_AFTER - 1, 840) == "time not set"  # the offset is local
    assert format_datetime(CLOCK_SET_AFTER) == "2023-11-14 22:13"
