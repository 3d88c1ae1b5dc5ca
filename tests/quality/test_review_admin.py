"""The admin doors: signing with the password, verifying, locking and unlocking, the read-only pages of locked
records, the refusal of a write to a locked patient shown as a form error, freezes and the dashboard; in
English and Chinese."""

from __future__ import annotations

import hashlib

import pytest
from django.utils import timezone

from followup import constants as fc
from followup.models import AdverseEvent
from quality.models import Freeze, Lock, Query, Signature, SourceVerification
from quality.services import review
from quality.services.queries import query_raise
from registry.constants import Role
from tests.factories import make_user
from tests.quality.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _sign_url(kind, pk):
    return f"/admin/quality/signature/sign/{kind}/{pk}/"


def test_the_sign_page_shows_the_meaning_and_a_wrong_password_signs_nothing(client, clinical, investigator_a):
    client.force_login(investigator_a)
    visit = clinical.visit("M1")
    page = client.get(_sign_url("visit", visit.pk))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Meaning of this signature" in text and "reviewed the data of this visit" in text and "Lan Chen" in text
    refused = client.post(_sign_url("visit", visit.pk), {"password": "wrong"})
    assert refused.status_code == 200 and "The password is not correct" in refused.content.decode()
    assert not Signature.objects.exists()
    signed = client.post(_sign_url("visit", visit.pk), {"password": PASSWORD})
    assert signed.status_code == 302 and signed["Location"] == f"/admin/followup/visit/{visit.pk}/change/"
    assert Signature.objects.get().visit_id == visit.pk


def test_a_coordinator_cannot_sign_and_another_sites_record_is_not_found(client, clinical, coordinator_a, site_b):
    staff = make_user("coord_staff", clinical.site, role=Role.COORDINATOR, password=PASSWORD)
    client.force_login(staff)
    response = client.post(_sign_url("visit", clinical.visit("M1").pk), {"password": PASSWORD})
    assert "Only an investigator" in response.content.decode()
    assert not Signature.objects.exists()
    other = make_user("inv_b", site_b, role=Role.INVESTIGATOR, password=PASSWORD)
    client.force_login(other)
    assert client.get(_sign_url("visit", clinical.visit("M1").pk)).status_code == 404
    assert client.get(_sign_url("nothing", 1)).status_code == 404


def test_a_monitor_verifies_chosen_fields(client, clinical, monitor):
    client.force_login(monitor)
    visit = clinical.visit("M1")
    url = f"/admin/quality/sourceverification/verify/visit/{visit.pk}/"
    assert "result:CREAT" in client.get(url).content.decode()
    response = client.post(url, {"fields": ["actual_date", "result:CREAT"]})
    assert response.status_code == 302
    assert SourceVerification.objects.get().fields == ["actual_date", "result:CREAT"]


def test_a_locked_patient_is_read_only_in_the_admin_with_the_reason(client, clinical, data_manager_a):
    client.force_login(data_manager_a)
    patient = clinical.patient
    locked = client.post(f"/admin/quality/lock/patient/{patient.pk}/", {"reason": "Database lock 2026"})
    assert locked.status_code == 302 and Lock.objects.get().patient_id == patient.pk
    visit = clinical.visit("M1")
    page = client.get(f"/admin/followup/visit/{visit.pk}/change/")
    text = page.content.decode()
    assert "Read only: Patient locked: Database lock 2026" in text
    assert 'name="_save"' not in text
    refused = client.post(f"/admin/followup/visit/{visit.pk}/change/", {"actual_date": "2025-04-02"})
    assert refused.status_code == 403


def test_a_write_to_a_locked_patient_shows_the_refusal_as_a_form_error(client, clinical, data_manager_a):
    review.lock_patient(patient=clinical.patient, reason="Database lock 2026", actor=data_manager_a)
    client.force_login(data_manager_a)
    before = AdverseEvent.objects.count()
    response = client.post(
        "/admin/followup/adverseevent/add/",
        {
            "patient": clinical.patient.pk,
            "term": "Fever",
            "category": fc.AECategory.OTHER,
            "onset_date": "2025-05-02",
            "grade": "1",
            "relatedness": fc.Relatedness.UNLIKELY,
            "expected": "on",
            "action_taken": fc.AEAction.NONE,
            "outcome": fc.AEOutcome.UNKNOWN,
            "aware_date": "2025-05-02",
            "_save": "Save",
        },
    )
    assert response.status_code == 200
    assert "Patient locked: Database lock 2026" in response.content.decode()
    assert response.context["adminform"].form.errors["patient"] == ["Patient locked: Database lock 2026"]
    assert AdverseEvent.objects.count() == before


def test_unlocking_in_the_admin_needs_a_reason_and_voids_signatures(client, clinical, investigator_a, data_manager_a):
    signature = review.signature_sign(record=clinical.visit("M1"), actor=investigator_a, password=PASSWORD)
    lock = review.lock_patient(patient=clinical.patient, reason="Database lock", actor=data_manager_a)
    client.force_login(data_manager_a)
    url = f"/admin/quality/lock/{lock.pk}/unlock/"
    assert client.post(url, {"reason": ""}).status_code == 200
    assert client.post(url, {"reason": "Late laboratory report"}).status_code == 302
    signature.refresh_from_db()
    assert signature.voided_at is not None


def test_only_a_data_manager_locks_in_the_admin(client, clinical, monitor):
    client.force_login(monitor)
    response = client.post(f"/admin/quality/lock/patient/{clinical.patient.pk}/", {"reason": "Not mine to lock"})
    assert "Only a data manager" in response.content.decode()
    assert not Lock.objects.exists()


def test_the_dashboard_counts_per_site_and_study(client, clinical, monitor, investigator_a, site_b):
    review.sdv_mark(record=clinical.visit("M1"), actor=monitor)
    before = Query.objects.filter(state__in=["open", "answered"], patient__site=clinical.site).count()
    query_raise(target=clinical.visit("M1"), text="Is the date right?", actor=monitor, field="actual_date")
    client.force_login(monitor)
    response = client.get("/admin/quality/sourceverification/dashboard/")
    rows = response.context["rows"]
    assert [(r["site"].code, r["complete"], r["verified"], r["signatures_pending"]) for r in rows] == [
        (clinical.site.code, 1, 1, 1)
    ]
    assert rows[0]["open_queries"] == before + 1
    other = make_user("coord_b_staff", site_b, role=Role.COORDINATOR)
    client.force_login(other)
    assert client.get("/admin/quality/sourceverification/dashboard/").context["rows"] == []


def test_the_sign_page_in_chinese(client, clinical, investigator_a):
    investigator_a.refresh_from_db()
    client.force_login(investigator_a)
    response = client.get(_sign_url("visit", clinical.visit("M1").pk), HTTP_ACCEPT_LANGUAGE="zh-hans")
    text = response.content.decode()
    assert "签名的含义" in text and "您的密码" in text


@pytest.mark.slow
def test_a_freeze_from_the_admin_serves_its_kept_files(client, clinical, data_manager_a, study, settings, tmp_path):
    settings.EXPORT_DIR = tmp_path / "exports"
    client.force_login(data_manager_a)
    response = client.post("/admin/quality/freeze/add/", {"study": study.pk, "name": "Interim 2026"})
    assert response.status_code == 302
    freeze = Freeze.objects.get()
    export = client.get(f"/admin/quality/freeze/{freeze.pk}/export/")
    assert hashlib.sha256(export.content).hexdigest() == freeze.export_sha256
    page = client.get(f"/admin/quality/freeze/{freeze.pk}/change/").content.decode()
    assert "export: unchanged; report: unchanged" in page


# Who may open each page: another site's staff find nothing, a wrong role is refused ----------------------

PAGES = [
    # (name, URL builder, role that may act, POST data)
    ("sign", lambda c, s: _sign_url("visit", c.visit("M1").pk), Role.INVESTIGATOR, {"password": PASSWORD}),
    ("verify", lambda c, s: f"/admin/quality/sourceverification/verify/adverse_event/{c.ae.pk}/", Role.MONITOR, {}),
    ("lock", lambda c, s: f"/admin/quality/lock/patient/{c.patient.pk}/", Role.DATA_MANAGER, {"reason": "DB lock"}),
    ("void", lambda c, s: f"/admin/quality/signature/{s.pk}/void/", Role.DATA_MANAGER, {"reason": "Correction"}),
]


@pytest.fixture
def signed(clinical, investigator_a):
    return review.signature_sign(record=clinical.patient, actor=investigator_a, password=PASSWORD)


@pytest.mark.parametrize("page", PAGES, ids=[p[0] for p in PAGES])
def test_another_sites_staff_find_no_record_page(client, clinical, signed, site_b, page):
    _, url, role, data = page
    outsider = make_user("outsider", site_b, role=role, password=PASSWORD)
    client.force_login(outsider)
    assert client.get(url(clinical, signed)).status_code == 404
    assert client.post(url(clinical, signed), data).status_code == 404


@pytest.mark.parametrize("page", PAGES, ids=[p[0] for p in PAGES])
def test_a_wrong_role_at_the_site_changes_nothing(client, clinical, signed, page):
    _, url, role, data = page
    others = [r for r in (Role.COORDINATOR, Role.MONITOR, Role.INVESTIGATOR, Role.DATA_MANAGER) if r != role]
    for number, other in enumerate(others):
        client.force_login(make_user(f"other{number}", clinical.site, role=other, password=PASSWORD))
        before = (
            Signature.objects.filter(voided_at=None).count(),
            SourceVerification.objects.count(),
            Lock.objects.count(),
        )
        response = client.post(url(clinical, signed), data)
        assert response.status_code == 200 and "errornote" in response.content.decode(), other
        after = (
            Signature.objects.filter(voided_at=None).count(),
            SourceVerification.objects.count(),
            Lock.objects.count(),
        )
        assert after == before, other


def test_the_dashboard_counts_signatures_of_the_visit_or_of_the_casebook_and_ignores_voided_and_cleared_ones(
    clinical, monitor, investigator_a, data_manager_a
):
    from quality.selectors import dashboard

    def counts():
        (row,) = dashboard(user=data_manager_a)
        return row["complete"], row["verified"], row["signatures_pending"], row["overdue"]

    overdue = counts()[3]
    assert overdue > 0  # the reference patient's later visits are long past their windows
    assert counts() == (1, 0, 1, overdue)
    review.sdv_mark(record=clinical.visit("M1"), actor=monitor)
    visit_signature = review.signature_sign(record=clinical.visit("M1"), actor=investigator_a, password=PASSWORD)
    assert counts() == (1, 1, 0, overdue)
    review.signature_void(signature=visit_signature, reason="Signed the wrong visit", actor=data_manager_a)
    assert counts() == (1, 1, 1, overdue)
    review.signature_sign(record=clinical.patient, actor=investigator_a, password=PASSWORD)
    assert counts() == (1, 1, 0, overdue)  # the casebook's signature covers its visits
    SourceVerification.objects.update(cleared_at=timezone.now())
    assert counts() == (1, 0, 0, overdue)
