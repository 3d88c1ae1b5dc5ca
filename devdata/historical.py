"""A large historical cohort to import: `patients` patients infused between 2015 and 2021, each with the twelve
visits of the default schedule (BL to M60) and their results, as one XLSX workbook (docs/import.md, "Speed").

Used by the import's speed test (tests/intake/test_large_import.py) and by workload 9 of `make bench`
(bench/workloads.py), which also makes the study, site and lot the rows name (`historical_reference`)."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

from followup.catalogue import ANALYTES
from registry import constants as rc

SCHEDULE = [("BL", -3), ("D7", 7), ("M1", 30), ("M3", 91), ("M6", 182), ("M9", 274), ("M12", 365), ("M18", 547),
            ("M24", 730), ("M36", 1095), ("M48", 1460), ("M60", 1825)]  # fmt: skip
RESULTS = ["SLEDAI2K", "PROT24H [mg/24h]", "CREAT [mg/dL]", "C3 [g/L]", "C4 [g/L]", "ADSDNA [IU/mL]", "PRED"]
LOT = "UC-HIST"


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


def historical_reference(*, site_code: str = "NJDT", study_code: str = "MSCT-HIST", lot_number: str = LOT):
    """(study, site) for the cohort in an empty registry: a site, a recruiting study there with the default
    template (no item required to complete a visit: the cohort's visits hold 7 results), and a released lot
    `lot_number` of 200 units from an unrelated donor, good from 2014 to 2030."""
    from devdata.demo import NEGATIVE_SCREENING
    from registry.models import CellProduct, Donor
    from registry.services import donor_save, lot_save, site_create, study_create

    site = site_create(code=site_code, name="Nanjing Drum Tower Hospital", country="CN", time_zone="Asia/Shanghai")
    study = study_create(
        code=study_code,
        registration_id="NCT01741857",
        title="Allogeneic MSC transplantation in refractory SLE: the historical cohort",
        phase=rc.StudyPhase.PHASE_1_2,
        target_enrolment=1000,
        sites=[site],
        status=rc.StudyStatus.RECRUITING,
    )
    study.visit_definitions.update(required_items=[])
    donor = donor_save(
        donor=Donor(
            study=study,
            site=site,
            code="DN-HIST",
            relation=rc.DonorRelation.UNRELATED,
            sex=rc.Sex.FEMALE,
            age_at_donation=27,
            **NEGATIVE_SCREENING,
        )
    )
    lot = lot_save(
        lot=CellProduct(
            lot_number=lot_number,
            study=study,
            site=site,
            donor=donor,
            tissue_source=rc.TissueSource.UMBILICAL_CORD,
            origin=rc.ProductOrigin.ALLOGENEIC,
            passage_number=4,
            cryopreserved_on=dt.date(2014, 6, 1),
            expires_on=dt.date(2030, 6, 1),
            cells_per_unit=100_000_000,
            units=200,
            **RELEASE_TESTS,
        )
    )
    assert lot.release_status == rc.ReleaseStatus.RELEASED, lot.release_failures
    return study, site


# Release results that meet every ISCT criterion and lot test (tests/factories.py uses them too).
RELEASE_TESTS = {
    "plastic_adherent": True,
    "cd105_pct": Decimal("98.5"),
    "cd73_pct": Decimal("99.1"),
    "cd90_pct": Decimal("97.8"),
    "cd45_pct": Decimal("0.8"),
    "cd34_pct": Decimal("0.5"),
    "cd14_or_cd11b_pct": Decimal("1.1"),
    "cd79a_or_cd19_pct": Decimal("0.4"),
    "hla_dr_pct": Decimal("0.9"),
    "trilineage_shown": True,
    "viability_pct": Decimal("92.0"),
    "sterility": rc.TestOutcome.NEGATIVE,
    "mycoplasma": rc.TestOutcome.NEGATIVE,
    "endotoxin_eu_per_ml": Decimal("0.120"),
    "karyotype": rc.Karyotype.NORMAL,
}
