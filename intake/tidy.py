"""The registry's own tidy CSV export (docs/exports.md) read back as import sheets: its columns renamed to the
import's, the columns it computes (study days, target dates, data quality) left out, and its long results
table (tidy/results.csv) turned into the visits' result columns. Only what was entered is carried over: a
derived result (eGFR, a SLEDAI-2K total from items) is computed again by the services."""

from __future__ import annotations

from collections import defaultdict

from intake.constants import SERIOUS, Kind
from intake.reading import FileError, Sheet

RENAME = {"subject": "subject_code", "visit": "visit_code", "actual_date": "visit_date", "drug_name": "drug_other"}
KEEP = {
    Kind.PATIENTS: ["subject_code", "site", "sex", "birth_year", "diagnosis_date", "classification_criteria",
                    "refractory_to", "consent_date", "status", "status_date"],
    Kind.INFUSIONS: ["subject_code", "infusion_number", "infused_at", "lot", "weight_kg", "dose_cells_per_kg", "route",
                     "duration_minutes", "premedication", "conditioning"],
    Kind.MEDICATIONS: ["subject_code", "drug", "drug_other", "dose", "unit", "frequency", "start_date", "stop_date"],
    Kind.ADVERSE_EVENTS: ["subject_code", "term", "category", "onset_date", "aware_date", "resolution_date", "grade",
                          "serious", "relatedness", "expected", "action_taken", "outcome", "infusion_number"],
}  # fmt: skip
RECORDED = {"completed": "complete", "in_progress": "in_progress"}
# The export keeps that a visit was outside its window, not why: the import says where the date came from.
DEVIATION = "Outside the window, as recorded in the registry export this visit was imported from."


def is_tidy(sheet: Sheet) -> bool:
    return "subject" in sheet.header and "study" in sheet.header


def from_tidy(sheets: list[Sheet]) -> list[Sheet]:
    """`sheets` with those of a tidy export converted (the results sheet merged into the visits)."""
    results = [s for s in sheets if s.kind == "results"]
    for sheet in results:
        if not is_tidy(sheet):
            raise FileError(
                f"{sheet.file}: a results table is read only as the registry's tidy export (tidy/results.csv); "
                "give results as columns of the visits file."
            )
    converted = []
    for sheet in sheets:
        if sheet.kind == "results" or not is_tidy(sheet):
            if sheet.kind != "results":
                converted.append(sheet)
            continue
        if sheet.kind == Kind.VISITS:
            converted.append(_visits(sheet, results))
        else:
            converted.append(_plain(sheet))
    return converted


def _renamed(cells: dict) -> dict:
    return {RENAME.get(name, name): value for name, value in cells.items()}


def _plain(sheet: Sheet) -> Sheet:
    keep = KEEP[sheet.kind]
    rows = []
    for number, cells in sheet.rows:
        cells = _renamed(cells)
        if sheet.kind == Kind.MEDICATIONS and cells.get("drug") != "other":
            cells["drug_other"] = ""
        if sheet.kind == Kind.ADVERSE_EVENTS:
            cells["serious"] = ";".join(k for k, name in SERIOUS.items() if cells.get(name) in ("Y", "1"))
        rows.append((number, {name: cells.get(name) for name in keep}))
    return Sheet(file=sheet.file, kind=sheet.kind, sha256=sheet.sha256, header=keep, rows=rows)


def _visits(sheet: Sheet, results: list[Sheet]) -> Sheet:
    values: dict[tuple[str, str], dict[str, object]] = defaultdict(dict)
    codes: list[str] = []
    for source in results:
        for _, cells in source.rows:
            if cells.get("derived") in ("1", 1):
                continue
            code = str(cells["code"])
            key = (str(cells["subject"]), str(cells["visit"]))
            values[key][code] = f"{cells.get('comparator') or ''}{cells['entered_value']}"
            values[key][f"{code}_unit"] = cells.get("entered_unit")
            if code not in codes:
                codes.append(code)
    header = ["subject_code", "visit_code", "visit_label", "visit_date", "deviation_reason", "status", "sledai_items"]
    header += [
        name for code in [*codes, *(["SLEDAI2K"] if "SLEDAI2K" not in codes else [])] for name in (code, f"{code}_unit")
    ]
    rows = []
    for number, cells in sheet.rows:
        status = RECORDED.get(str(cells.get("outcome")))
        if status is None:
            continue  # open, missed or not required: nothing was entered to import
        row = {
            "subject_code": cells["subject"],
            "visit_code": cells["visit"],
            "visit_label": cells.get("label"),
            "visit_date": cells["actual_date"],
            "deviation_reason": DEVIATION if cells.get("out_of_window") in ("1", 1) else "",
            "status": status,
            "sledai_items": cells.get("sledai_items") if cells.get("sledai_assessed") in ("1", 1) else None,
            **values.get((str(cells["subject"]), str(cells["visit"])), {}),
        }
        if cells.get("sledai_assessed") in ("1", 1) and not cells.get("sledai_items"):
            row.setdefault("SLEDAI2K", "0")  # assessed, no item present: a total of 0
        rows.append((number, row))
    return Sheet(file=sheet.file, kind=Kind.VISITS, sha256=sheet.sha256, header=header, rows=rows)
