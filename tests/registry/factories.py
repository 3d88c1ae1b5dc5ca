"""Factories of the registry app. Studies and lots are made through their services (template, release)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import factory
from factory.django import DjangoModelFactory

from registry import constants as c
from registry.models import CellProduct, Donor, Site, Study

# Release test results that meet every criterion of RELEASE_CRITERIA.
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
    "sterility": c.TestOutcome.NEGATIVE,
    "mycoplasma": c.TestOutcome.NEGATIVE,
    "endotoxin_eu_per_ml": Decimal("0.120"),
    "karyotype": c.Karyotype.NORMAL,
}


class SiteFactory(DjangoModelFactory):
    class Meta:
        model = Site
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"SITE{n}")
    name = factory.LazyAttribute(lambda o: f"Hospital {o.code}")
    country = "CN"
    time_zone = "Asia/Shanghai"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        from registry.services import site_create

        return site_create(**kwargs)


class StudyFactory(DjangoModelFactory):
    """A study with its sites (one new site unless given) and the default template, via `study_create`."""

    class Meta:
        model = Study

    code = factory.Sequence(lambda n: f"STUDY{n}")
    registration_id = factory.Sequence(lambda n: f"NCT9{n:07d}")
    title = factory.LazyAttribute(lambda o: f"MSCT in refractory SLE ({o.code})")
    phase = c.StudyPhase.PHASE_2
    target_enrolment = 30
    sites = factory.LazyFunction(lambda: [SiteFactory()])

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        from registry.services import study_create

        return study_create(**kwargs)


class DonorFactory(DjangoModelFactory):
    class Meta:
        model = Donor

    study = factory.SubFactory(StudyFactory)
    site = factory.LazyAttribute(lambda o: o.study.sites.order_by("pk").first())
    code = factory.Sequence(lambda n: f"D{n:04d}")
    relation = c.DonorRelation.UNRELATED
    sex = c.Sex.FEMALE
    age_at_donation = 28

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        from registry.services import donor_save

        return donor_save(donor=model_class(**kwargs))


class CellProductFactory(DjangoModelFactory):
    """A released umbilical-cord lot of 10 units x 100 million cells, saved through `lot_save`."""

    class Meta:
        model = CellProduct

    lot_number = factory.Sequence(lambda n: f"UC-2026-{n:04d}")
    study = factory.SubFactory(StudyFactory)
    site = factory.LazyAttribute(lambda o: o.study.sites.order_by("pk").first())
    donor = factory.SubFactory(
        DonorFactory, study=factory.SelfAttribute("..study"), site=factory.SelfAttribute("..site")
    )
    tissue_source = c.TissueSource.UMBILICAL_CORD
    origin = c.ProductOrigin.ALLOGENEIC
    passage_number = 4
    cryopreserved_on = dt.date(2025, 12, 1)
    expires_on = dt.date(2027, 12, 1)
    cells_per_unit = 100_000_000
    units = 10

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        from registry.services import lot_save

        tests = {**PASSING_RELEASE_TESTS, **kwargs.pop("release_tests", {})}
        return lot_save(lot=model_class(**tests, **kwargs))
