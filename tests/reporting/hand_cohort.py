"""The small cohort of the cohort report's tests, worked out by hand, and helpers to read its report.

The cohort (study RPT-SLE, sites RPA and RPB; site RPC takes part only in another study). Everyone is
infused on 2025-03-03 (day 0; DAY_ZERO of tests.factories) and the visits are recorded on their target days:
BL 2025-03-03, M3 2025-06-02 (day 91), M6 2025-09-01 (day 182).

    site RPA
    A-01  F 1990  consent 2025-01-15  umbilical cord, one infusion
          BL SLEDAI 12 (arthritis 4, proteinuria 4, rash 2, low complement 2)  PROT24H 1.2  PRED 20
          M3 SLEDAI  2 (low complement 2)                                      PROT24H 0.3  PRED 7.5
          M6 SLEDAI  9 (arthritis 4, rash 2, low complement 2, fever 1)        PROT24H 0.8  PRED 15
    A-02  F 1985  consent 2025-01-15  umbilical cord, two infusions (day 0 and day 7)
          BL SLEDAI 16 (arthritis 4, urinary casts 4, proteinuria 4, haematuria 4) PROT24H 3.0 PRED 30
          M3 SLEDAI  8 (proteinuria 4, haematuria 4)                               PROT24H 1.2 PRED 15
          M6 SLEDAI  4 (proteinuria 4)                                             PROT24H 0.6 PRED 10
    A-03  M 1995  consent 2025-02-01  bone marrow, one infusion
          BL SLEDAI 10 (arthritis 4, rash 2, alopecia 2, low complement 2)  PROT24H 0.4  PRED 25
          M3 SLEDAI 10 (the same items)                                     PROT24H 0.4  PRED 20
          M6 SLEDAI  2 (rash 2)                                             PROT24H 0.2  PRED 5
    A-04  F 1980  consent 2025-02-01  bone marrow, one infusion; died 2025-07-15 (day 134)
          BL SLEDAI 14 (vasculitis 8, arthritis 4, rash 2)  PROT24H 2.0  PRED 40
          M3 SLEDAI 12 (vasculitis 8, arthritis 4)          PROT24H 2.5  PRED 30
    site RPB (same study: must never show in a report for RPA)
    B-01  F 1992  umbilical cord; BL SLEDAI 20, M3 SLEDAI 0 (PRED 5); died 2025-08-01; one adverse event

Adverse events at RPA: A-01 infection (grade 2, unrelated) and other (grade 1, unlikely); A-03 cytopenia
(grade 3, hospitalised, unlikely). At RPB: B-01 infection (grade 2, unrelated).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

from followup import constants as fc
from followup.services import ae_record, visit_record
from patients.services import patient_record_death
from registry import constants as rc
from registry.models import Site, Study
from reporting.cohort import CohortFilter, cohort_report
from tests.factories import (
    DAY_ZERO,
    make_donor,
    make_lot,
    make_patient,
    make_site,
    make_study,
    make_transplant,
)

D = Decimal
BL = DAY_ZERO  # 2025-03-03
M3 = dt.date(2025, 6, 2)
M6 = dt.date(2025, 9, 1)
A4_DEATH = dt.date(2025, 7, 15)
B1_DEATH = dt.date(2025, 8, 1)
STUDY = "RPT-SLE"
CSV_HEADER = ["section", "group", "time_point", "variable", "statistic", "value"]


def r2(x: float) -> float:
    return round(x, 2)


def p3(x: float) -> float:
    """A p-value the way the report shows it: 3 significant figures."""
    return float(f"{x:.3g}")


# The hand-computed cohort ------------------------------------------------------------------------------


@dataclass
class Cohort:
    study: Study
    other_study: Study
    site_a: Site
    site_b: Site
    site_c: Site
    patients: dict


def record(patient, code: str, on: dt.date, items: list[str], prot: str, pred: str):
    visit = patient.visits.get(code=code)
    return visit_record(
        visit=visit,
        actual_date=on,
        results={"PROT24H": D(prot), "PRED": D(pred)},
        sledai_items=items,
    )


def build_cohort() -> Cohort:
    """The cohort described at the top of this module, recorded through the services."""
    site_a, site_b, site_c = make_site("RPA"), make_site("RPB"), make_site("RPC")
    study = make_study(site_a, site_b, code=STUDY)
    other_study = make_study(site_c, code="RPT-OTHER")
    uc_a = make_lot(study, site_a, lot_number="UC-RPA-1")
    bm_donor = make_donor(study, site_a, code="DN-BM-RPA-1", sex=rc.Sex.MALE, age_at_donation=31)
    bm_a = make_lot(
        study,
        site_a,
        lot_number="BM-RPA-1",
        donor=bm_donor,
        tissue_source=rc.TissueSource.BONE_MARROW,
        passage_number=3,
    )
    uc_b = make_lot(study, site_b, lot_number="UC-RPB-1")

    a1 = make_patient(study, site_a, subject_code="A-01", sex="F", birth_year=1990)
    a2 = make_patient(study, site_a, subject_code="A-02", sex="F", birth_year=1985)
    a3 = make_patient(study, site_a, subject_code="A-03", sex="M", birth_year=1995, consent_date=dt.date(2025, 2, 1))
    a4 = make_patient(study, site_a, subject_code="A-04", sex="F", birth_year=1980, consent_date=dt.date(2025, 2, 1))
    b1 = make_patient(study, site_b, subject_code="B-01", sex="F", birth_year=1992)
    make_transplant(a1, uc_a)
    make_transplant(a2, uc_a)
    make_transplant(a2, uc_a, day=DAY_ZERO + dt.timedelta(days=7))
    make_transplant(a3, bm_a)
    make_transplant(a4, bm_a)
    make_transplant(b1, uc_b)

    record(a1, "BL", BL, ["arthritis", "proteinuria", "rash", "low_complement"], "1.2", "20")
    record(a1, "M3", M3, ["low_complement"], "0.3", "7.5")
    record(a1, "M6", M6, ["arthritis", "rash", "low_complement", "fever"], "0.8", "15")

    record(a2, "BL", BL, ["arthritis", "urinary_casts", "proteinuria", "haematuria"], "3.0", "30")
    record(a2, "M3", M3, ["proteinuria", "haematuria"], "1.2", "15")
    record(a2, "M6", M6, ["proteinuria"], "0.6", "10")

    record(a3, "BL", BL, ["arthritis", "rash", "alopecia", "low_complement"], "0.4", "25")
    record(a3, "M3", M3, ["arthritis", "rash", "alopecia", "low_complement"], "0.4", "20")
    record(a3, "M6", M6, ["rash"], "0.2", "5")

    record(a4, "BL", BL, ["vasculitis", "arthritis", "rash"], "2.0", "40")
    record(a4, "M3", M3, ["vasculitis", "arthritis"], "2.5", "30")
    patient_record_death(patient=a4, on_date=A4_DEATH, cause="Sepsis")

    record(b1, "BL", BL, ["vasculitis", "seizure", "arthritis"], "2.2", "35")
    record(b1, "M3", M3, [], "0.1", "5")
    patient_record_death(patient=b1, on_date=B1_DEATH, cause="Pulmonary embolism")

    ae_record(
        patient=a1,
        term="upper respiratory infection",
        category=fc.AECategory.INFECTION,
        onset_date=dt.date(2025, 4, 10),
        aware_date=dt.date(2025, 4, 11),
        grade=fc.CTCAEGrade.MODERATE,
        relatedness=fc.Relatedness.UNRELATED,
        expected=True,
    )
    ae_record(
        patient=a1,
        term="fatigue",
        category=fc.AECategory.OTHER,
        onset_date=dt.date(2025, 3, 5),
        aware_date=dt.date(2025, 3, 5),
        grade=fc.CTCAEGrade.MILD,
        relatedness=fc.Relatedness.UNLIKELY,
        expected=True,
    )
    ae_record(
        patient=a3,
        term="neutropenia",
        category=fc.AECategory.CYTOPENIA,
        onset_date=dt.date(2025, 5, 1),
        aware_date=dt.date(2025, 5, 2),
        grade=fc.CTCAEGrade.SEVERE,
        serious_hospitalisation=True,
        relatedness=fc.Relatedness.UNLIKELY,
        expected=True,
    )
    ae_record(
        patient=b1,
        term="pneumonia",
        category=fc.AECategory.INFECTION,
        onset_date=dt.date(2025, 4, 1),
        aware_date=dt.date(2025, 4, 2),
        grade=fc.CTCAEGrade.MODERATE,
        relatedness=fc.Relatedness.UNRELATED,
        expected=True,
    )
    return Cohort(
        study=study,
        other_study=other_study,
        site_a=site_a,
        site_b=site_b,
        site_c=site_c,
        patients={"A-01": a1, "A-02": a2, "A-03": a3, "A-04": a4, "B-01": b1},
    )


def report_a(cohort: Cohort, **flt) -> dict:
    return cohort_report(study=cohort.study, site_ids=[cohort.site_a.pk], flt=CohortFilter(**flt))


def time_point(report: dict, visit: str, code: str) -> dict:
    (entry,) = [e for e in report["time_points"] if e["time_point"] == visit and e["code"] == code]
    return entry


# Values of site A, by patient A-01 .. A-04 (A-04 died before M6).
SLEDAI = {"BL": [12, 16, 10, 14], "M3": [2, 8, 10, 12], "M6": [9, 4, 2]}
PROT = {"BL": [1.2, 3.0, 0.4, 2.0], "M3": [0.3, 1.2, 0.4, 2.5], "M6": [0.8, 0.6, 0.2]}
PRED = {"BL": [20, 30, 25, 40], "M3": [7.5, 15, 20, 30], "M6": [15, 10, 5]}


def admin_url(study: Study) -> str:
    return f"/admin/reporting/cohortreport/{study.pk}/change/"


def page_text(html: str) -> str:
    """The words a reader sees: no charts, no tags."""
    html = re.sub(r"<svg.*?</svg>", " ", html, flags=re.S)
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())
