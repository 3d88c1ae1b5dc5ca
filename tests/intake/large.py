"""A large historical cohort: `patients` patients infused between 2015 and 2021, each with the twelve visits of
the default schedule (BL to M60) and their results, as one XLSX workbook or CSV files (docs/import.md,
"Speed")."""

from __future__ import annotations

import datetime as dt
import io

from followup.catalogue import ANALYTES

SCHEDULE = [("BL", -3), ("D7", 7), ("M1", 30), ("M3", 91), ("M6", 182), ("M9", 274), ("M12", 365), ("M18", 547),
            ("M24", 730), ("M36", 1095), ("M48", 1460), ("M60", 1825)]  # fmt: skip
RESULTS = ["SLEDAI2K", "PROT24H [mg/24h]", "CREAT [mg/dL]", "C3 [g/L]", "C4 [g/L]", "ADSDNA [IU/mL]", "PRED"]


def large_cohort(patients: int, *, site: str, lot: str) -> dict[str, list[list[object]]]:
    """{kind: rows (header first)} of the cohort."""
    assert set(code.split(" ")[0] for code in RESULTS) <= set(ANALYTES)
    tables = {
        "patients": [["subject_code", "site", "sex", "birth_year", "diagnosis_date", "classification_criteria",
                      "consent_date"]],
        "infusions": [["subject_code", "infusion_number", "infused_at", "lot", "weight_kg", "dose_cells_per_kg"]],
        "visits": [["subject_code", "visit_code", "visit_date", *RESULTS]],
    }  # fmt: skip
    for n in range(patients):
        code = f"HIST-{n:04d}"
        day_zero = dt.date(2015, 1, 5) + dt.timedelta(days=(n * 11) % 2300)
        tables["patients"].append(
            [code, site, "F" if n % 7 else "M", 1970 + n % 30, day_zero - dt.timedelta(days=900), "acr1997",
             day_zero - dt.timedelta(days=10)]
        )  # fmt: skip
        tables["infusions"].append([code, 1, f"{day_zero.isoformat()} 10:00", lot, 50 + n % 20, 1_000_000])
        for index, (visit, offset) in enumerate(SCHEDULE):
            sledai = max(0, 14 - index - n % 3)
            tables["visits"].append(
                [code, visit, day_zero + dt.timedelta(days=offset), sledai, 2500 - 150 * index, "0.9",
                 "0.6", "0.12", "<10" if index % 4 == 3 else 40 + index, 30 - 2 * index]
            )  # fmt: skip
    return tables


def as_workbook(tables: dict[str, list[list[object]]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for kind, rows in tables.items():
        sheet = book.create_sheet(kind)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
