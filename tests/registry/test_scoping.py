"""Site scoping: `for_user` keeps what a person may see (and, with write=True, what they may change)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser

from followup.models import Visit
from patients.models import Patient, TransplantEvent
from patients.services import transplant_record
from registry.models import CellProduct, Donor, Site, Study
from tests.factories import CellProductFactory, PatientFactory, StudyFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_now")]

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
LONDON = zoneinfo.ZoneInfo("Europe/London")


@pytest.fixture
def world(study, site_a, site_b):
    """A transplanted patient with a lot at each site, and a study in which only site B takes part."""
    lot_a = CellProductFactory(study=study, site=site_a)
    lot_b = CellProductFactory(study=study, site=site_b)
    patient_a = PatientFactory(study=study, site=site_a, subject_code="A-001")
    patient_b = PatientFactory(study=study, site=site_b, subject_code="B-001")
    for patient, lot, zone in ((patient_a, lot_a, SHANGHAI), (patient_b, lot_b, LONDON)):
        transplant_record(
            patient=patient,
            lot=lot,
            infused_at=dt.datetime(2026, 1, 15, 10, 0, tzinfo=zone),
            weight_kg=Decimal("55.0"),
            dose_cells_per_kg=1_000_000,
        )
    study_b_only = StudyFactory(code="B-ONLY", sites=[site_b])
    lot_b_only = CellProductFactory(study=study_b_only, site=site_b)
    return {
        "patient_a": patient_a,
        "patient_b": patient_b,
        "lot_a": lot_a,
        "lot_b": lot_b,
        "study_b_only": study_b_only,
        "lot_b_only": lot_b_only,
    }


def test_coordinator_sees_own_site_patients_infusions_and_visits_only(world, coordinator_a):
    assert list(Patient.objects.for_user(coordinator_a)) == [world["patient_a"]]
    assert set(TransplantEvent.objects.for_user(coordinator_a).values_list("patient", flat=True)) == {
        world["patient_a"].pk
    }
    visits = Visit.objects.for_user(coordinator_a)
    assert visits.count() == 12
    assert set(visits.values_list("patient", flat=True)) == {world["patient_a"].pk}


def test_coordinator_sees_own_site_and_its_studies_only(world, coordinator_a, site_a, study):
    assert list(Site.objects.for_user(coordinator_a)) == [site_a]
    assert list(Study.objects.for_user(coordinator_a)) == [study]


def test_coordinator_sees_lots_of_own_site_and_own_studies_but_not_other_sites_studies(world, coordinator_a):
    lots = set(CellProduct.objects.for_user(coordinator_a))

    assert world["lot_a"] in lots
    # Site A infuses the lots of the studies it takes part in, wherever they are held.
    assert world["lot_b"] in lots
    assert world["lot_b_only"] not in lots


def test_coordinator_sees_donors_of_own_site_only(world, coordinator_a, site_a):
    assert set(Donor.objects.for_user(coordinator_a).values_list("site", flat=True)) == {site_a.pk}


def test_coordinator_of_other_site_sees_nothing_of_site_a(world, coordinator_b, site_a):
    assert world["patient_a"] not in Patient.objects.for_user(coordinator_b)
    assert not Visit.objects.for_user(coordinator_b).filter(patient__site=site_a).exists()
    assert not TransplantEvent.objects.for_user(coordinator_b).filter(patient__site=site_a).exists()
    assert site_a not in Site.objects.for_user(coordinator_b)


def test_superuser_sees_every_site(world, superuser):
    assert Patient.objects.for_user(superuser).count() == 2
    assert Visit.objects.for_user(superuser).count() == 24
    assert CellProduct.objects.for_user(superuser).count() == 3
    assert Study.objects.for_user(superuser).count() == 2
    assert Patient.objects.for_user(superuser, write=True).count() == 2


def test_inactive_user_sees_nothing(world, coordinator_a):
    coordinator_a.is_active = False
    coordinator_a.save()

    assert not Patient.objects.for_user(coordinator_a).exists()
    assert not Visit.objects.for_user(coordinator_a).exists()
    assert not CellProduct.objects.for_user(coordinator_a).exists()
    assert not Study.objects.for_user(coordinator_a).exists()
    assert not Site.objects.for_user(coordinator_a).exists()


def test_anonymous_user_sees_nothing(world):
    assert not Patient.objects.for_user(AnonymousUser()).exists()
    assert not Patient.objects.for_user(None).exists()


def test_monitor_reads_own_site_but_cannot_write_it(world, monitor_a):
    assert list(Patient.objects.for_user(monitor_a)) == [world["patient_a"]]
    assert Visit.objects.for_user(monitor_a).count() == 12

    assert not Patient.objects.for_user(monitor_a, write=True).exists()
    assert not Visit.objects.for_user(monitor_a, write=True).exists()
    assert not Site.objects.for_user(monitor_a, write=True).exists()


def test_writing_roles_keep_their_site_when_writing(world, coordinator_a, second_user_a):
    for user in (coordinator_a, second_user_a):
        assert list(Patient.objects.for_user(user, write=True)) == [world["patient_a"]]


@pytest.mark.parametrize("url", ["/admin/followup/visit/", "/admin/followup/adverseevent/", "/admin/patients/patient/"])
def test_the_site_and_study_filters_of_a_list_offer_the_users_own_only(client, world, site_a, site_b, url):
    """Another hospital's name is not offered to a coordinator in the filters beside a list of their sites' rows
    (with one site and one study to choose from, Django shows no such filter at all)."""
    from tests.factories import make_user

    client.force_login(make_user("filters.coordinator", site_a))
    response = client.get(url)
    assert response.status_code == 200
    offered = [
        choice["display"]
        for spec in response.context["cl"].filter_specs
        for choice in spec.choices(response.context["cl"])
    ]
    assert str(site_b) not in offered and str(world["study_b_only"]) not in offered, offered
    assert response.content.decode().count(site_b.name) == 0


def test_the_api_key_lists_site_filter_offers_only_the_managers_sites(client):
    from registry.constants import Role
    from registry.services import membership_grant
    from tests.factories import make_site, make_user

    mine, mine_too = make_site(code="KEYMINE", name="Mine hospital"), make_site(code="KEYMINE2")
    make_site(code="KEYOTHER", name="Other hospital of another city")
    manager = make_user("keys.manager", mine, role=Role.DATA_MANAGER)
    membership_grant(user=manager, site=mine_too, role=Role.DATA_MANAGER)
    client.force_login(manager)
    html = client.get("/admin/registry/apikey/").content.decode()
    assert "KEYMINE" in html and "KEYMINE2" in html  # the filter, offering the sites whose keys the user manages
    assert "Other hospital" not in html and "KEYOTHER" not in html
