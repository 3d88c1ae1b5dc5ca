"""What every SDTM dataset shares: the identifier and timing variables (STUDYID, DOMAIN, USUBJID, VISITNUM,
VISIT, EPOCH), the study day of a date and the epoch it falls in."""

from __future__ import annotations

import datetime as dt

from reporting.exports.common import Column, Context
from reporting.exports.sdtm_terms import EPOCHS, epoch

STUDYID = Column("STUDYID", "string", "Study identifier (study code).")
USUBJID = Column("USUBJID", "string", "Unique subject identifier: STUDYID-SUBJID.")
VISITNUM = Column("VISITNUM", "integer", "Visit number: the time point's planned day offset (blank unscheduled).")
VISIT_SDTM = Column("VISIT", "string", "Visit name (the registry's visit code).")


def _domain(code: str) -> Column:
    return Column("DOMAIN", "string", "Domain abbreviation.", values=code)


EPOCH = Column("EPOCH", "string", "Epoch of the date: SCREENING, TREATMENT, FOLLOW-UP.", values="; ".join(EPOCHS))


def _sdtm_day(on: dt.date | None, reference: dt.date | None) -> str | int:
    """SDTM --DY: day 1 is the reference start date; there is no day 0."""
    if not on or not reference:
        return ""
    days = (on - reference).days
    return days + 1 if days >= 0 else days


def _epoch(ctx: Context, site: int, on: dt.date | None, day0_at, last_at) -> str:
    return epoch(on, ctx.local_date(day0_at, site), ctx.local_date(last_at, site))
