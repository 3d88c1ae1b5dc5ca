"""Plain builders for the clinical-data tests: a site, a study, a released lot, a patient and a first
infusion, all made through the registry and patients services.

These are ordinary functions (not fixtures) so they can be combined freely inside a test and never clash
with fixtures defined elsewhere. Every code they make up is unique within the test database.

Default timeline (Asia/Shanghai): consent 2025-01-15, first infusion 2025-03-03 10:00 local, so day 0
is 2025-03-03 and the default template gives

    BL  2025-03-03 (window 2025-02-17 .. 2025-03-03)
    D7  2025-03-10 (2025-03-08 .. 2025-03-12)
    M1  2025-04-02 (2025-03-26 .. 2025-04-09)
    M3  2025-06-02 (2025-05-19 .. 2025-06-16)
    M6  2025-09-01 (2025-08-18 .. 2025-09-15)
    M9  2025-12-02 (2025-11-18 .. 2025-12-16)
    M12 2026-03-03 (2026-02-01 .. 2026-04-02)
"""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal

from followup.models import Visit
from patients.models import Patient, TransplantEvent
from patients.services import patient_enroll, transplant_record
from registry import constants as rc
from registry.models import CellProduct, Donor, Site, Study
from registry.services import donor_save, lot_save, membership_grant, site_create, study_create

DAY_ZERO = dt.date(2025, 3, 3)
CONSENT = dt.date(2025, 1, 15)
DIAGNOSIS = dt.date(2019, 6, 1)

# Release results that meet every ISCT criterion and lot test.
PASSING_RELEASE_TESTS = {
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

_numbers = itertools.count(1)


def _next() -> int:
    return next(_numbers)


def make_site(code: str | None = None, *, time_zone: str = "Asia/Shanghai", country: str = "CN") -> Site:
    code = code or f"CS{_next():03d}"
    return site_create(code=code, name=f"Hospital {code}", country=country, time_zone=time_zone)


def make_study(*sites: Site, code: str | None = None) -> Study:
    number = _next()
    code = code or f"CLIN{number:03d}"
    return study_create(
        code=code,
        registration_id=f"NCT7{number:07d}",
        title=f"Allogeneic MSCT in refractory SLE ({code})",
        phase=rc.StudyPhase.PHASE_1_2,
        target_enrolment=40,
        sites=list(sites),
    )


def make_lot(study: Study, site: Site, *, lot_number: str | None = None) -> CellProduct:
    number = _next()
    donor = donor_save(
        donor=Donor(
            study=study,
            site=site,
            code=f"DN{number:04d}",
            relation=rc.DonorRelation.UNRELATED,
            sex=rc.Sex.FEMALE,
            age_at_donation=27,
        )
    )
    lot = CellProduct(
        lot_number=lot_number or f"UC-CLIN-{number:04d}",
        study=study,
        site=site,
        donor=donor,
        tissue_source=rc.TissueSource.UMBILICAL_CORD,
        origin=rc.ProductOrigin.ALLOGENEIC,
        passage_number=4,
        cryopreserved_on=dt.date(2024, 11, 1),
        expires_on=dt.date(2026, 11, 1),
        cells_per_unit=100_000_000,
        units=10,
        **PASSING_RELEASE_TESTS,
    )
    lot = lot_save(lot=lot)
    assert lot.release_status == rc.ReleaseStatus.RELEASED, lot.release_failures
    return lot


def make_patient(
    study: Study,
    site: Site,
    *,
    subject_code: str | None = None,
    sex: str = "F",
    birth_year: int = 1990,
    consent_date: dt.date = CONSENT,
) -> Patient:
    return patient_enroll(
        study=study,
        site=site,
        subject_code=subject_code or f"SLE-{_next():04d}",
        sex=sex,
        birth_year=birth_year,
        diagnosis_date=DIAGNOSIS,
        classification_criteria="acr1997",
        consent_date=consent_date,
        refractory_to=["cyclophosphamide"],
    )


def local_datetime(day: dt.date, site: Site, hour: int = 10) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, 0), tzinfo=zoneinfo.ZoneInfo(site.time_zone))


def make_transplant(
    patient: Patient,
    lot: CellProduct,
    *,
    day: dt.date = DAY_ZERO,
    weight_kg: Decimal = Decimal("60.0"),
    dose_cells_per_kg: int = 1_000_000,
) -> TransplantEvent:
    return transplant_record(
        patient=patient,
        lot=lot,
        infused_at=local_datetime(day, patient.site),
        weight_kg=weight_kg,
        dose_cells_per_kg=dose_cells_per_kg,
    )


@dataclass
class Clinical:
    """One transplanted patient and everything around them."""

    site: Site
    study: Study
    lot: CellProduct
    patient: Patient
    transplant: TransplantEvent

    def visit(self, code: str) -> Visit:
        return Visit.objects.get(patient=self.patient, code=code)

    def refresh(self) -> Clinical:
        self.patient.refresh_from_db()
        return self


def make_clinical(
    *,
    time_zone: str = "Asia/Shanghai",
    country: str = "CN",
    sex: str = "F",
    birth_year: int = 1990,
    day_zero: dt.date = DAY_ZERO,
    weight_kg: Decimal = Decimal("60.0"),
    site: Site | None = None,
    study: Study | None = None,
    lot: CellProduct | None = None,
) -> Clinical:
    """A site, a study with the default template, a released lot, and a patient infused on `day_zero`."""
    site = site or make_site(time_zone=time_zone, country=country)
    study = study or make_study(site)
    lot = lot or make_lot(study, site)
    patient = make_patient(study, site, sex=sex, birth_year=birth_year)
    transplant = make_transplant(patient, lot, day=day_zero, weight_kg=weight_kg)
    patient.refresh_from_db()
    return Clinical(site=site, study=study, lot=lot, patient=patient, transplant=transplant)


def make_user(username: str, site: Site | None = None, *, role: str = rc.Role.COORDINATOR, staff: bool = True):
    """A staff user holding `role` at `site` (no membership when `site` is None)."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=username, password="not-used-in-tests", is_staff=staff)
    if site is not None:
        membership_grant(user=user, site=site, role=role)
    return user
