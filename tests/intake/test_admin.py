"""The admin's import page: check, then import, for the user's sites only; the template download; Chinese."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from followup.models import Visit
from patients.models import Patient
from registry.constants import Role
from tests.factories import make_lot, make_user
from tests.intake.cohort import LOT, cohort_files

pytestmark = pytest.mark.django_db


@pytest.fixture
def lot(study, site_a):
    return make_lot(study, site_a, lot_number=LOT)


def _uploads():
    return [SimpleUploadedFile(name, content, content_type="text/csv") for name, content in cohort_files()]


def _page(study):
    return reverse("admin:intake_cohortimport_change", args=[study.pk])


def test_check_writes_nothing_then_import_writes_the_cohort_as_the_user(client, frozen_now, study, lot, site_a):
    user = make_user("coord_import", site_a, role=Role.COORDINATOR)
    client.force_login(user)

    checked = client.post(_page(study), {"files": _uploads(), "check": "1"})

    assert checked.status_code == 200
    assert "no problem found; nothing was written" in checked.content.decode()
    assert not Patient.objects.exists()

    imported = client.post(_page(study), {"files": _uploads(), "import": "1"})

    assert "Imported:" in imported.content.decode()
    assert Visit.objects.filter(outcome="completed").count() == 5
    history = Patient.history.filter(history_type="+")
    assert {(h.history_door, h.history_user_id) for h in history} == {("import", user.pk)}
    assert all(h.history_actor.startswith("coord_import sha256:") for h in history)


def test_another_sites_user_can_import_nothing_into_site_a(client, frozen_now, study, lot, site_b):
    client.force_login(make_user("coord_other", site_b, role=Role.COORDINATOR))

    response = client.post(_page(study), {"files": _uploads(), "import": "1"})

    text = response.content.decode()
    assert "nothing was written" in text
    assert "You can only enter data for the sites where you hold a writing role." in text
    assert not Patient.objects.exists()


def test_the_template_downloads_as_a_workbook(client, study, site_a):
    client.force_login(make_user("coord_tpl", site_a, role=Role.COORDINATOR))

    response = client.get(_page(study), {"template": "xlsx"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.openxmlformats")
    assert response.content[:2] == b"PK"


def test_the_page_speaks_chinese(client, study, site_a):
    client.force_login(make_user("coord_zh", site_a, role=Role.COORDINATOR))

    response = client.get(_page(study), HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert "下载空白模板" in response.content.decode()
