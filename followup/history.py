"""One history of a visit: its own changes and its results' and SLEDAI-2K items', as a reader says them.

The audit trail keeps a history table per model (core/audit.py); a visit's recording writes the visit's row
and each result's row at one instant with one reason (`followup/services/recording.py`). This module reads
both and groups what was written together into one entry: when, who (the user, or the API key), the door,
the reason, and each change from its old value to its new one. Three queries, whatever the visit's length
of history.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.utils.translation import gettext

from core.audit import Door
from followup.catalogue import ANALYTES, SLEDAI_ITEMS
from followup.computations import censored_text
from followup.constants import NotDoneReason, VisitOutcome
from followup.models import Result, Visit

# The visit's fields a reader follows, with their labels (gettext at reading time).
VISIT_FIELDS = (
    ("actual_date", "date of the visit"),
    ("outcome", "outcome"),
    ("deviation_reason", "deviation reason"),
    ("outcome_reason", "outcome reason"),
    ("sledai_items", "SLEDAI-2K items present"),
    ("not_done", "not done"),
    ("target_date", "target date"),
    ("window_start", "window opens"),
    ("window_end", "window closes"),
)


@dataclass
class HistoryEntry:
    when: dt.datetime
    who: str
    door: str
    reason: str
    created: bool = False
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # (what, before, after)


def _shown(name: str, value) -> str:
    if name == "sledai_items" and value == []:
        return gettext("assessed, none present")
    if value in (None, "", [], {}):
        return "—"
    if name == "outcome":
        return gettext(VisitOutcome(value).label)
    if name == "sledai_items":
        return ", ".join(gettext(SLEDAI_ITEMS[code].label) if code in SLEDAI_ITEMS else code for code in value)
    if name == "not_done":
        reasons = dict(NotDoneReason.choices)
        return ", ".join(f"{code}: {gettext(reasons.get(why, why))}" for code, why in sorted(value.items()))
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _result_shown(row) -> str:
    if row is None:
        return "—"
    comparator = getattr(row, "comparator", "")
    if row.entered_value is not None and row.entered_unit:
        return f"{censored_text(row.entered_value, comparator)} {row.entered_unit}"
    return f"{censored_text(row.value, comparator)} {ANALYTES[row.code].unit if row.code in ANALYTES else ''}".strip()


def visit_history(visit: Visit) -> list[HistoryEntry]:
    """Every change of `visit`, its results and its SLEDAI-2K items, newest first."""
    visit_rows = list(Visit.history.filter(id=visit.pk).order_by("history_date", "history_id"))
    result_rows = list(Result.history.filter(visit_id=visit.pk).order_by("history_date", "history_id"))
    user_ids = {row.history_user_id for row in [*visit_rows, *result_rows] if row.history_user_id}
    users = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username"))
    doors = dict(Door.choices)
    entries: dict[tuple, HistoryEntry] = {}

    def entry_of(row) -> HistoryEntry:
        key = (row.history_date, row.history_user_id, row.history_actor, row.history_door, row.history_change_reason)
        if key not in entries:
            who = users.get(row.history_user_id) or row.history_actor or str(doors.get(row.history_door, ""))
            entries[key] = HistoryEntry(
                when=row.history_date,
                who=who,
                door=str(doors.get(row.history_door, row.history_door)),
                reason=row.history_change_reason or "",
            )
        return entries[key]

    previous = None
    for row in visit_rows:
        entry = entry_of(row)
        if row.history_type == "+":
            entry.created = True
        for name, label in VISIT_FIELDS:
            before = getattr(previous, name) if previous is not None else None
            after = getattr(row, name)
            if before != after and (previous is not None or after not in (None, "", [], {})):
                entry.changes.append((gettext(label), _shown(name, before), _shown(name, after)))
        previous = row
    last: dict[str, object] = {}
    for row in result_rows:
        entry = entry_of(row)
        before = last.get(row.code)
        after = None if row.history_type == "-" else row
        label = f"{row.code}: {gettext(ANALYTES[row.code].label)}" if row.code in ANALYTES else row.code
        shown_before, shown_after = _result_shown(before), _result_shown(after)
        if shown_before != shown_after:
            entry.changes.append((label, shown_before, shown_after))
        last[row.code] = after
    return sorted(entries.values(), key=lambda e: e.when, reverse=True)
