"""How the cohort report prints numbers and times: p-values as "< 0.001" or three significant digits, and
the report's UTC timestamp in the reader's time zone (the one UserLanguageMiddleware activates)."""

from __future__ import annotations

import datetime as dt
import math

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format

register = template.Library()

P_FLOOR = 0.001


@register.filter
def pvalue(value) -> str:
    """A p-value as printed: "< 0.001" below 0.001, else three significant digits (0.0500, 0.123, 1.00);
    "—" when there is none (too few patients for the test)."""
    if value is None or value == "":
        return "—"
    value = float(value)
    if math.isnan(value):
        return "—"
    if value < P_FLOOR:
        return f"< {P_FLOOR}"
    return f"{value:#.3g}"


@register.filter
def local_time(value) -> str:
    """An ISO 8601 timestamp (or datetime) as "YYYY-MM-DD HH:MM" and the zone's abbreviation, in the time
    zone active for the reader."""
    if not value:
        return ""
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, dt.UTC)
    local = timezone.localtime(moment)
    return f"{date_format(local, 'Y-m-d H:i')} {local.tzname()}"


@register.filter
def p_statement(value) -> str:
    """A p-value in a sentence: "p < 0.001" or "p = 0.0421" ("p = —" when there is none)."""
    text = pvalue(value)
    return f"p {text}" if text.startswith("<") else f"p = {text}"
