"""Cells as the services take them: dates (ISO or year first only), date-times (local to the site unless an
offset is given), numbers, censored values ("<10"), lists and flags. A cell that cannot be read raises a
CellError naming the rule; nothing is guessed (03/04/2010 could be March or April: it is refused)."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from decimal import Decimal, InvalidOperation

from django.utils.translation import gettext

from followup.constants import Comparator

_YEAR_FIRST = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")
_DAY_OR_MONTH_FIRST = re.compile(r"^\d{1,2}\s*[-/.]\s*\d{1,2}\s*[-/.]\s*\d{2,4}$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")
_CENSORED = re.compile(r"^(<=|>=|<|>|≤|≥)\s*(.+)$")
_SIGNS = {"≤": "<=", "≥": ">="}


class CellError(Exception):
    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule, self.message = rule, message


def blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def text(value) -> str:
    if blank(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def parse_date(value) -> dt.date | None:
    if blank(value):
        return None
    if isinstance(value, dt.datetime):
        if value.time() != dt.time(0):
            raise CellError(
                "date_format",
                gettext("'%(value)s' has a time; give the date alone.") % {"value": value.isoformat(sep=" ")},
            )
        return value.date()
    if isinstance(value, dt.date):
        return value
    raw = text(value)
    match = _YEAR_FIRST.match(raw)
    if match:
        try:
            return dt.date(*(int(part) for part in match.groups()))
        except ValueError:
            raise CellError(
                "date_format", gettext("'%(value)s' is not a date of the calendar.") % {"value": raw}
            ) from None
    if _DAY_OR_MONTH_FIRST.match(raw):
        raise CellError(
            "ambiguous_date",
            gettext(
                "'%(value)s' is ambiguous (day or month first?); write the year first: YYYY-MM-DD, e.g. 2010-03-04."
            )
            % {"value": raw},
        )
    raise CellError(
        "date_format",
        gettext("'%(value)s' is not a date; write YYYY-MM-DD (or year first, 2010/3/4).") % {"value": raw},
    )


def parse_datetime(value, time_zone: str) -> dt.datetime | None:
    """A date and time; without an offset it is the site's local time (`time_zone`)."""
    if blank(value):
        return None
    zone = zoneinfo.ZoneInfo(time_zone)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    raw = text(value).replace("T", " ")
    offset = _OFFSET.search(raw)
    stamp = raw[: offset.start()].strip() if offset else raw
    day, _, clock = stamp.partition(" ")
    if not clock.strip():
        raise CellError(
            "datetime_format",
            gettext("'%(value)s' has no time; give the infusion's date and time (2008-01-15 10:00).") % {"value": raw},
        )
    on = parse_date(day)
    match = _TIME.match(clock.strip())
    if match is None:
        raise CellError("datetime_format", gettext("'%(value)s': the time is not HH:MM.") % {"value": raw})
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    try:
        moment = dt.datetime.combine(on, dt.time(hour, minute, second))
    except ValueError:
        raise CellError("datetime_format", gettext("'%(value)s': the time is not HH:MM.") % {"value": raw}) from None
    if offset:
        try:
            return dt.datetime.fromisoformat(f"{moment.isoformat()}{offset[1].replace('Z', '+00:00')}")
        except ValueError:
            raise CellError(
                "datetime_format", gettext("'%(value)s': the offset is not +HH:MM.") % {"value": raw}
            ) from None
    return moment.replace(tzinfo=zone)


def parse_decimal(value) -> Decimal | None:
    if blank(value):
        return None
    raw = text(value).replace(",", "") if isinstance(value, str) else str(value)
    try:
        number = Decimal(raw)
    except InvalidOperation:
        raise CellError("number", gettext("'%(value)s' is not a number.") % {"value": text(value)}) from None
    if not number.is_finite():
        raise CellError("number", gettext("'%(value)s' is not a number.") % {"value": text(value)})
    return number


def parse_int(value) -> int | None:
    number = parse_decimal(value)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise CellError("number", gettext("'%(value)s' is not a whole number.") % {"value": text(value)})
    return int(number)


def parse_censored(value) -> tuple[Decimal, str] | None:
    """A result with its comparator: "12.5" -> (12.5, ""), "<10" -> (10, "<")."""
    if blank(value):
        return None
    if isinstance(value, str):
        match = _CENSORED.match(value.strip())
        if match:
            comparator = _SIGNS.get(match[1], match[1])
            assert comparator in Comparator.values
            return parse_decimal(match[2]), comparator
    return parse_decimal(value), ""


def parse_list(value) -> list[str]:
    return [part.strip() for part in re.split(r"[;,；，]", text(value)) if part.strip()]


def parse_flag(value) -> bool | None:
    raw = text(value).lower()
    if not raw:
        return None
    if raw in {"y", "yes", "1", "true", "是"}:
        return True
    if raw in {"n", "no", "0", "false", "否"}:
        return False
    raise CellError("flag", gettext("'%(value)s' is not Y or N.") % {"value": text(value)})
