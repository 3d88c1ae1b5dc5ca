"""A small historical cohort as the files a centre would bring: two patients of site A, their infusions,
visits with results, a medication and an adverse event (day 0 = 2025-03-03, as tests/factories.py)."""

from __future__ import annotations

import csv
import io

LOT = "UC-HIST-001"

PATIENTS = [
    {
        "subject_code": "NJ-001",
        "site": "NJDT",
        "sex": "F",
        "birth_year": "1985",
        "diagnosis_date": "2019-06-01",
        "classification_criteria": "acr1997",
        "consent_date": "2025-01-15",
        "refractory_to": "cyclophosphamide;prednisone",
    },
    {
        "subject_code": "NJ-002",
        "site": "NJDT",
        "sex": "M",
        "birth_year": "1990",
        "diagnosis_date": "2018/3/9",
        "classification_criteria": "slicc2012",
        "consent_date": "2025-01-20",
        "refractory_to": "mycophenolate",
    },
]

INFUSIONS = [
    {"subject_code": "NJ-001", "infusion_number": "1", "infused_at": "2025-03-03 10:00", "lot": LOT,
     "weight_kg": "58.5", "dose_cells_per_kg": "1000000"},
    {"subject_code": "NJ-002", "infusion_number": "1", "infused_at": "2025-03-03 11:00", "lot": LOT,
     "weight_kg": "70", "dose_cells_per_kg": "1000000"},
    {"subject_code": "NJ-002", "infusion_number": "2", "infused_at": "2025-03-10 10:00", "lot": LOT,
     "weight_kg": "70", "dose_cells_per_kg": "1000000"},
]  # fmt: skip

REQUIRED = {"PROT24H [g/24h]": "2.5", "CREAT [mg/dL]": "1.0", "C3 [g/L]": "0.6", "C4 [g/L]": "0.1",
            "ADSDNA [IU/mL]": "<10"}  # fmt: skip
VISITS = [
    {"subject_code": "NJ-001", "visit_code": "BL", "visit_date": "2025-03-01", "SLEDAI2K": "12", **REQUIRED},
    {"subject_code": "NJ-001", "visit_code": "Month 1", "visit_date": "2025-04-03", "CREAT [mg/dL]": "0.9"},
    {"subject_code": "NJ-001", "visit_code": "M3", "visit_date": "2025-06-01", "sledai_items": "arthritis;rash",
     **REQUIRED, "ADSDNA [IU/mL]": "35"},
    {"subject_code": "NJ-002", "visit_code": "BL", "visit_date": "2025-02-28", "SLEDAI2K": "10", **REQUIRED},
    {"subject_code": "NJ-002", "visit_code": "", "visit_date": "2025-04-05", "PRED": "20"},  # day 33: M1
]  # fmt: skip

MEDICATIONS = [
    {"subject_code": "NJ-001", "drug": "prednisone", "dose": "20", "unit": "mg", "frequency": "daily",
     "start_date": "2025-01-01"},
]  # fmt: skip

ADVERSE_EVENTS = [
    {"subject_code": "NJ-002", "term": "Herpes zoster", "category": "infection", "onset_date": "2025-05-02",
     "aware_date": "2025-05-03", "grade": "2", "relatedness": "unlikely", "expected": "N", "outcome": "recovered",
     "resolution_date": "2025-05-20"},
]  # fmt: skip


def csv_bytes(rows: list[dict], header: list[str] | None = None) -> bytes:
    header = header or list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def cohort_files(**replace: list[dict]) -> list[tuple[str, bytes]]:
    """The cohort's five files; `replace` gives other rows for some of them (by kind)."""
    tables = {
        "patients": PATIENTS,
        "infusions": INFUSIONS,
        "visits": VISITS,
        "medications": MEDICATIONS,
        "adverse_events": ADVERSE_EVENTS,
    }
    tables.update(replace)
    return [(f"{kind}.csv", csv_bytes(rows)) for kind, rows in tables.items()]
