"""Wall-clock arithmetic in Unix seconds, done here because ports disagree on the epoch
(the ESP32's time module counts from 2000, the unix port's from 1970).

Records keep UTC seconds since 1970, or 0 while the clock has not been set. The merchant's
day (for daily limits and reports) is the local date at a configured UTC offset.
"""

from pos.compat import const

CLOCK_SET_AFTER = const(1_700_000_000)  # any earlier time means the clock was never set
_DAY = const(86400)


def is_set(unix_seconds):
    return unix_seconds >= CLOCK_SET_AFTER


def civil(unix_seconds, utc_offset_min=0):
    """(year, month, day, hour, minute, second) of a Unix time at a UTC offset."""
    seconds = unix_seconds + utc_offset_min * 60
    days, rest = divmod(seconds, _DAY)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    # Days to civil date (Howard Hinnant's algorithm, proleptic Gregorian).
    days += 719468
    era = days // 146097
    day_of_era = days - era * 146097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    return year, month, day, hour, minute, second


def local_day(unix_seconds, utc_offset_min=0):
    """A day number for the merchant's local date (days since 1970-01-01 local)."""
    return (unix_seconds + utc_offset_min * 60) // _DAY


def format_datetime(unix_seconds, utc_offset_min=0):
    """'2026-11-27 14:05' in local time, or 'time not set'."""
    if not is_set(unix_seconds):
        return "time not set"
    year, month, day, hour, minute, _ = civil(unix_seconds, utc_offset_min)
    return "%04d-%02d-%02d %02d:%02d" % (year, month, day, hour, minute)
