"""The test data of the whole suite, built through the services the way production data are.

Every site, study, donor, lot, patient, infusion and staff user a test needs is made here:

- `make_site`, `make_study`, `make_donor`, `make_lot`, `make_patient`, `make_transplant`, `make_user` and
  `make_superuser` make one object each, through site_create, study_create, donor_save, lot_save,
  patient_enroll, transplant_record and membership_grant. Every code they make up is unique within the test
  database; pass a code to get that one.
- `make_clinical` makes one transplanted patient and everything around them (`Clinical`).
- `make_finished_export` makes a done export job with a small archive on disk, without running an export.
- `SiteFactory`, `StudyFactory`, `DonorFactory`, `CellProductFactory` and `PatientFactory` (factory_boy) hold
  the defaults of the registry and patients tests: consent on 2025-12-15, lots usable from 2025-12-01 to
  2027-12-01. They create through the functions above.

These are ordinary functions (not fixtures) so they can be combined freely inside a test and never clash
with fixtures defined elsewhere; the shared fixtures of `tests/conftest.py` call them too.

Default timeline of the functions (Asia/Shanghai): consent 2025-01-15, first infusion 2025-03-03 10:00
local, so day 0 is 2025-03-03 and the default template gives

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
import json
import zipfile
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import factory
from django.conf import settings
from factory.django import DjangoModelFactory

from devdata.historical import RELEASE_TESTS
from followup.models import Visit
from patients import constants as pc
from patients.models import Patient, TransplantEvent
from patients.services import patient_enroll, transplant_record
from registry import constants as rc
from registry.models import ApiKey, CellProduct, Donor, Site, Study
from registry.services import donor_save, lot_save, membership_grant, site_create, study_create
from reporting.constants import ExportState
from reporting.models import ExportJob

DAY_ZERO = dt.date(2025, 3, 3)
CONSENT = dt.date(2025, 1, 15)
DIAGNOSIS = dt.date(2019, 6, 1)

# Release results that meet every ISCT criterion and lot test (those of the historical cohort's lot).
PASSING_RELEASE_TESTS = RELEASE_TESTS

_numbers = itertools.count(1)


def _next() -> int:
    return next(_numbers)


# Registry ----------------------------------------------------------------------------------------------


def make_site(
    code: str | None = None,
    *,
    name: str | None = None,
    time_zone: str = "Asia/Shanghai",
    country: str = "CN",
    **fields,
) -> Site:
    code = code or f"CS{_next():03d}"
    return site_create(code=code, name=name or f"Hospital {code}", country=country, time_zone=time_zone, **fields)


def make_study(
    *sites: Site,
    code: str | None = None,
    registration_id: str | None = None,
    title: str | None = None,
    phase: str = rc.StudyPhase.PHASE_1_2,
    target_enrolment: int = 40,
    required_items: bool = False,
    **fields,
) -> Study:
    """A study at `sites` with the default follow-up template, recruiting unless `status` says otherwise; its
    visits require no item to complete unless `required_items` (most tests record a few results at a visit, not
    the template's whole list)."""
    number = _next() if code is None or registration_id is None else None
    fields.setdefault("status", rc.StudyStatus.RECRUITING)  # a study takes new patients only while recruiting
    code = code or f"CLIN{number:03d}"
    study = study_create(
        code=code,
        registration_id=registration_id or f"NCT7{number:07d}",
        title=title or f"Allogeneic MSCT in refractory SLE ({code})",
        phase=phase,
        target_enrolment=target_enrolment,
        sites=list(sites),
        **fields,
    )
    if not required_items:
        study.visit_definitions.update(required_items=[])
    return study


def make_donor(
    study: Study,
    site: Site,
    *,
    code: str | None = None,
    relation: str = rc.DonorRelation.UNRELATED,
    sex: str = rc.Sex.FEMALE,
    age_at_donation: int = 27,
    **fields,
) -> Donor:
    return donor_save(
        donor=Donor(
            study=study,
            site=site,
            code=code or f"DN{_next():04d}",
            relation=relation,
            sex=sex,
            age_at_donation=age_at_donation,
            **fields,
        )
    )


def make_lot(
    study: Study,
    site: Site,
    *,
    lot_number: str | None = None,
    donor: Donor | None = None,
    tissue_source: str = rc.TissueSource.UMBILICAL_CORD,
    origin: str = rc.ProductOrigin.ALLOGENEIC,
    passage_number: int = 4,
    cryopreserved_on: dt.date = dt.date(2024, 11, 1),
    expires_on: dt.date = dt.date(2026, 11, 1),
    cells_per_unit: int = 100_000_000,
    units: int = 10,
    release_tests: dict | None = None,
    **fields,
) -> CellProduct:
    """A lot of `units` x `cells_per_unit` cells with the PASSING_RELEASE_TESTS, from a donor of its own
    unless `donor` is given. `release_tests` overrides some results; without it the lot must be released."""
    number = _next() if donor is None or lot_number is None else None
    if donor is None:
        donor = make_donor(study, site, code=f"DN{number:04d}")
    lot = lot_save(
        lot=CellProduct(
            lot_number=lot_number or f"UC-CLIN-{number:04d}",
            study=study,
            site=site,
            donor=donor,
            tissue_source=tissue_source,
            origin=origin,
            passage_number=passage_number,
            cryopreserved_on=cryopreserved_on,
            expires_on=expires_on,
            cells_per_unit=cells_per_unit,
            units=units,
            **{**PASSING_RELEASE_TESTS, **(release_tests or {})},
            **fields,
        )
    )
    if release_tests is None:
        assert lot.release_status == rc.ReleaseStatus.RELEASED, lot.release_failures
    return lot


# Patients ----------------------------------------------------------------------------------------------


def make_patient(
    study: Study,
    site: Site,
    *,
    subject_code: str | None = None,
    sex: str = "F",
    birth_year: int = 1990,
    diagnosis_date: dt.date = DIAGNOSIS,
    classification_criteria: str = "acr1997",
    consent_date: dt.date | None = CONSENT,
    refractory_to: list[str] | None = None,
    **fields,
) -> Patient:
    """An enrolled patient (in screening when `consent_date` is None)."""
    return patient_enroll(
        study=study,
        site=site,
        subject_code=subject_code or f"SLE-{_next():04d}",
        sex=sex,
        birth_year=birth_year,
        diagnosis_date=diagnosis_date,
        classification_criteria=classification_criteria,
        consent_date=consent_date,
        refractory_to=["cyclophosphamide"] if refractory_to is None else refractory_to,
        **fields,
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
    """An infusion at 10:00 on `day` in the patient's site's time zone."""
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


# Users -------------------------------------------------------------------------------------------------


def make_user(
    username: str,
    site: Site | None = None,
    *,
    role: str = rc.Role.COORDINATOR,
    staff: bool = True,
    password: str | None = "not-used-in-tests",
    email: str | None = None,
):
    """A user holding `role` at `site` (no membership when `site` is None); no usable password when
    `password` is None."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=username, email=email, password=password, is_staff=staff)
    if site is not None:
        membership_grant(user=user, site=site, role=role)
    return user


def make_superuser(username: str):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser(username=username, password="not-used-in-tests")


# Exports -----------------------------------------------------------------------------------------------


def make_finished_export(study: Study, site: Site, key: ApiKey) -> ExportJob:
    """A done export job of the key's site with a small zip in EXPORT_DIR (building a real one is tested elsewhere)."""
    directory = Path(settings.EXPORT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    job = ExportJob.objects.create(
        study=study, site_ids=[site.pk], requested_by_key=key, state=ExportState.DONE, progress=100
    )
    path = directory / f"{job.pk}.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.json", json.dumps({"sites": [site.code], "files": []}))
    ExportJob.objects.filter(pk=job.pk).update(file_path=str(path), manifest={"sites": [site.code], "files": []})
    job.refresh_from_db()
    return job


# factory_boy: the registry and patients tests' defaults --------------------------------------------------


class SiteFactory(DjangoModelFactory):
    class Meta:
        model = Site

    code = factory.Sequence(lambda n: f"SITE{n}")
    name = factory.LazyAttribute(lambda o: f"Hospital {o.code}")
    country = "CN"
    time_zone = "Asia/Shanghai"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return make_site(**kwargs)


class StudyFactory(DjangoModelFactory):
    """A study with its sites (one new site unless given) and the default template."""

    class Meta:
        model = Study

    code = factory.Sequence(lambda n: f"STUDY{n}")
    registration_id = factory.Sequence(lambda n: f"NCT9{n:07d}")
    title = factory.LazyAttribute(lambda o: f"MSCT in refractory SLE ({o.code})")
    phase = rc.StudyPhase.PHASE_2
    target_enrolment = 30
    sites = factory.LazyFunction(lambda: [SiteFactory()])

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return make_study(*kwargs.pop("sites"), **kwargs)


class DonorFactory(DjangoModelFactory):
    class Meta:
        model = Donor

    study = factory.SubFactory(StudyFactory)
    site = factory.LazyAttribute(lambda o: o.study.sites.order_by("pk").first())
    code = factory.Sequence(lambda n: f"D{n:04d}")
    relation = rc.DonorRelation.UNRELATED
    sex = rc.Sex.FEMALE
    age_at_donation = 28

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return make_donor(**kwargs)


class CellProductFactory(DjangoModelFactory):
    """An umbilical-cord lot of 10 units x 100 million cells, released unless `release_tests` override results."""

    class Meta:
        model = CellProduct

    lot_number = factory.Sequence(lambda n: f"UC-2026-{n:04d}")
    study = factory.SubFactory(StudyFactory)
    site = factory.LazyAttribute(lambda o: o.study.sites.order_by("pk").first())
    donor = factory.SubFactory(
        DonorFactory, study=factory.SelfAttribute("..study"), site=factory.SelfAttribute("..site")
    )
    tissue_source = rc.TissueSource.UMBILICAL_CORD
    origin = rc.ProductOrigin.ALLOGENEIC
    passage_number = 4
    cryopreserved_on = dt.date(2025, 12, 1)
    expires_on = dt.date(2027, 12, 1)
    cells_per_unit = 100_000_000
    units = 10

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return make_lot(release_tests=kwargs.pop("release_tests", {}), **kwargs)


class PatientFactory(DjangoModelFactory):
    """An enrolled patient (consent 2025-12-15) at the first site of the study."""

    class Meta:
        model = Patient

    study = factory.SubFactory(StudyFactory)
    site = factory.LazyAttribute(lambda o: o.study.sites.order_by("pk").first())
    subject_code = factory.Sequence(lambda n: f"S{n:04d}")
    sex = rc.Sex.FEMALE
    birth_year = 1988
    diagnosis_date = dt.date(2019, 4, 10)
    classification_criteria = pc.ClassificationCriteria.SLICC_2012
    consent_date = dt.date(2025, 12, 15)
    refractory_to = factory.LazyFunction(lambda: [pc.Drug.CYCLOPHOSPHAMIDE, pc.Drug.PREDNISONE])

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return make_patient(**kwargs)
