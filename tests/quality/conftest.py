"""Data quality personas of site A: an investigator (with a known password), a monitor and a data manager;
and a transplanted patient there with a recorded M1 visit and an adverse event."""

from __future__ import annotations

import datetime as dt

import pytest

from followup import constants as fc
from followup.services import ae_record, visit_record
from registry.constants import Role
from tests.factories import DAY_ZERO, make_clinical, make_user

PASSWORD = "correct horse battery staple"
M1 = DAY_ZERO + dt.timedelta(days=30)


@pytest.fixture
def investigator_a(site_a):
    user = make_user("inv_a", site_a, role=Role.INVESTIGATOR, password=PASSWORD)
    user.first_name, user.last_name = "Lan", "Chen"
    user.save()
    return user


@pytest.fixture
def monitor(site_a):
    return make_user("mon_a", site_a, role=Role.MONITOR)


@pytest.fixture
def data_manager_a(site_a):
    return make_user("dm_a", site_a, role=Role.DATA_MANAGER)


@pytest.fixture
def data_manager_b(site_b):
    return make_user("dm_b", site_b, role=Role.DATA_MANAGER)


@pytest.fixture
def clinical(site_a, study):
    clinical = make_clinical(site=site_a, study=study)
    visit_record(visit=clinical.visit("M1"), actual_date=M1, results={"C3": "0.61", "CREAT": "80"})
    clinical.ae = ae_record(
        patient=clinical.patient,
        term="Herpes zoster",
        category=fc.AECategory.INFECTION,
        grade=fc.CTCAEGrade.MODERATE,
        relatedness=fc.Relatedness.UNLIKELY,
        expected=True,
        onset_date=dt.date(2025, 4, 20),
        aware_date=dt.date(2025, 4, 21),
    )
    return clinical
