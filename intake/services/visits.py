"""Rows of a visits sheet as the follow-up services take them: the columns of results (unit in the header or a
unit column), SLEDAI-2K items (a list or one column per item), visits named by code, label or day after
transplant (the nearest window), and whether a row changes what is stored."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.utils.translation import gettext

from followup.catalogue import ANALYTES, SLEDAI_ITEMS
from followup.computations import to_canonical
from followup.constants import NotDoneReason, RecordStatus, VisitOutcome
from followup.models import Visit
from intake.constants import COLUMNS, NOT_DONE_CELLS, REMOVE_CELLS, Kind
from intake.parsing import CellError, blank, parse_censored, parse_list, text

_RESULT_HEADER = re.compile(r"^([A-Za-z0-9]+)\s*(?:\[(.+)\]|\((.+)\))?$")
_ITEM_HEADER = re.compile(r"^SLEDAI[:_ ](\w+)$", re.IGNORECASE)
BASE = {c.name for c in COLUMNS[Kind.VISITS]} | {"day"}


@dataclass
class Layout:
    """Where a visits sheet keeps what: {code: (column, unit from the header)}, unit columns, item columns."""

    results: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    items: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)


def layout_of(header: list[str]) -> Layout:
    layout = Layout()
    codes = {code.upper(): code for code in ANALYTES}
    for column in header:
        if not column or column in BASE:
            continue
        item = _ITEM_HEADER.match(column)
        if item and item[1].lower() in SLEDAI_ITEMS:
            layout.items[item[1].lower()] = column
            continue
        if column.lower().endswith("_unit") and column[:-5].upper() in codes:
            layout.units[codes[column[:-5].upper()]] = column
            continue
        match = _RESULT_HEADER.match(column)
        if match and match[1].upper() in codes:
            layout.results[codes[match[1].upper()]] = (column, (match[2] or match[3] or "").strip() or None)
            continue
        layout.unknown.append(column)
    return layout


@dataclass
class VisitRow:
    results: dict[str, dict]
    not_done: dict[str, str] | None
    items: list[str] | None
    status: str
    columns: dict[str, str]  # a service's field -> the column holding it
    remove: set[str] = field(default_factory=set)  # result codes whose cell says "remove"
    empty: set[str] = field(default_factory=set)  # result codes whose column is present and its cell empty


def read_row(cells: dict, layout: Layout) -> tuple[VisitRow, list[tuple[str, CellError]]]:
    """The row's results, not-done reasons and items; errors as (column, CellError)."""
    errors: list[tuple[str, CellError]] = []
    results, not_done, remove, empty = {}, {}, set(), set()
    columns = {"actual_date": "visit_date", "deviation_reason": "deviation_reason", "status": "status"}
    for code, (column, header_unit) in layout.results.items():
        columns[code] = column
        raw = cells.get(column)
        if blank(raw):
            empty.add(code)
            continue
        if isinstance(raw, str) and raw.strip().lower() in REMOVE_CELLS:
            remove.add(code)
            continue
        if isinstance(raw, str) and raw.strip().lower() in NOT_DONE_CELLS:
            not_done[code] = NOT_DONE_CELLS[raw.strip().lower()]
            continue
        unit = text(cells.get(layout.units[code])) if code in layout.units else ""
        if unit and header_unit and unit != header_unit:
            errors.append(
                (
                    column,
                    CellError(
                        "unit",
                        gettext("%(code)s: the header says %(header)s, the unit column %(unit)s.")
                        % {"code": code, "header": header_unit, "unit": unit},
                    ),
                )
            )
            continue
        try:
            value, comparator = parse_censored(raw)
        except CellError as exc:
            errors.append((column, exc))
            continue
        results[code] = {"value": value, "unit": unit or header_unit, "comparator": comparator}
    for part in parse_list(cells.get("not_done")):
        code, _, why = part.partition("=")
        not_done[code.strip().upper()] = why.strip() or NotDoneReason.NOT_DONE
    items = None
    if not blank(cells.get("sledai_items")):
        items = [item.lower() for item in parse_list(cells.get("sledai_items"))]
        columns["sledai_items"] = "sledai_items"
    elif layout.items and any(not blank(cells.get(column)) for column in layout.items.values()):
        items = [item for item, column in layout.items.items() if text(cells.get(column)).lower() in {"1", "y", "yes"}]
        columns["sledai_items"] = next(iter(layout.items.values()))
    status = text(cells.get("status")) or RecordStatus.COMPLETE
    return VisitRow(results, not_done or None, items, status, columns, remove, empty), errors


_UNSCHEDULED = re.compile(r"^U\d{2,}$", re.IGNORECASE)


def new_unscheduled(visits: list[Visit], code: str) -> bool:
    """Whether `code` names an unscheduled visit (U01, U02, ...) the patient does not have yet."""
    return bool(_UNSCHEDULED.match(code.strip())) and all(v.code.lower() != code.strip().lower() for v in visits)


def next_unscheduled_code(visits: list[Visit]) -> str:
    return f"U{sum(1 for v in visits if v.definition_id is None) + 1:02d}"


def find_visit(visits: list[Visit], *, code: str, day_zero: dt.date | None, on: dt.date | None) -> Visit:
    """The patient's visit named by code or label, or else the scheduled visit whose window is nearest `on`."""
    if code:
        wanted = code.strip().lower()
        for visit in visits:
            if visit.code.lower() == wanted or visit.label.lower() == wanted:
                return visit
        known = ", ".join(v.code for v in visits) or gettext("none (no first infusion recorded)")
        raise ValidationError(
            {
                "visit_code": gettext("No visit '%(code)s' in the patient's schedule; the visits are %(known)s.")
                % {"code": code, "known": known}
            }
        )
    if on is None:
        raise ValidationError({"visit_date": gettext("Give the visit date (or the visit code).")})
    if day_zero is None:
        raise ValidationError(
            {
                "visit_code": gettext(
                    "The patient has no first infusion, so the visit cannot be found by its day; give its code."
                )
            }
        )
    scheduled = [v for v in visits if v.definition_id]

    def distance(visit: Visit) -> tuple[int, int]:
        outside = max((visit.window_start - on).days, (on - visit.window_end).days, 0)
        return outside, abs((visit.target_date - on).days)

    return min(scheduled, key=distance)


def unchanged(visit: Visit, stored: dict, *, row: VisitRow, on: dt.date | None, deviation: str) -> bool:
    """Whether recording the row again would change nothing stored (`stored`: {code: Result})."""
    complete = row.status == RecordStatus.COMPLETE
    if visit.outcome != (VisitOutcome.COMPLETED if complete else VisitOutcome.IN_PROGRESS):
        return False
    if visit.actual_date != on or (visit.deviation_reason or "") != deviation:
        return False
    if row.items is not None and sorted(row.items) != sorted(visit.sledai_items or []):
        return False
    if row.remove & stored.keys():
        return False
    for code, given in row.results.items():
        result = stored.get(code)
        if result is None or result.derived and code != "SLEDAI2K":
            return False
        try:
            canonical = to_canonical(code, given["value"], given["unit"], given["comparator"])
        except ValidationError:
            return False
        if result.value != canonical or result.comparator != given["comparator"]:
            return False
    return all((visit.not_done or {}).get(code) == why for code, why in (row.not_done or {}).items())
