"""Admin pages of the notification ledger, the safety signals and the e-mail preferences, scoped to the
user's sites (coordinators logged in with the Django test client)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.urls import reverse

from followup import constants as fc
from followup.models import SafetySignal, Visit
from notifications.ledger import reminders_sweep
from notifications.models import Notification, NotificationPreference
from registry.constants import Role
from tests.factories import local_datetime, make_lot, make_patient, make_transplant, make_user

pytestmark = pytest.mark.django_db

D = dt.date
UTC = dt.UTC
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
DAY_ZERO = D(2026, 1, 15)
NOW = dt.datetime(2026, 2, 10, 12, 0, tzinfo=SHANGHAI)  # M1 of a patient infused on DAY_ZERO is due


def clock(now: dt.datetime):
    return time_machine.travel(now, tick=False)


def member(username: str, site, role: str = Role.COORDINATOR):
    user = make_user(username, site, role=role, email=f"{username}@registry.example")
    return user


def transplanted(study, site, code: str):
    with clock(local_datetime(DAY_ZERO, site, hour=12)):
        patient = make_patient(study, site, subject_code=code)
        make_transplant(patient, make_lot(study, site), day=DAY_ZERO, weight_kg=Decimal("55.0"))
    Visit.objects.filter(patient=patient, code__in=["BL", "D7"]).update(
        outcome=fc.VisitOutcome.COMPLETED, actual_date=DAY_ZERO
    )
    return patient


def ledger_row(site, *, kind="visit_reminder", state="pending", stage="due", email="someone@registry.example"):
    return Notification.objects.create(
        kind=kind,
        object_id=Notification.objects.count() + 1000,
        stage=stage,
        recipient_email=email,
        site=site,
        state=state,
        send_after=NOW,
    )


def listed(response) -> set[int]:
    assert response.status_code == 200
    return {row.pk for row in response.context["cl"].result_list}


@pytest.fixture
def coord_a(site_a):
    return member("coord_a", site_a)


@pytest.fixture
def coord_b(site_b):
    return member("coord_b", site_b)


@pytest.fixture
def client_a(client, coord_a):
    client.force_login(coord_a)
    return client


# Ledger ------------------------------------------------------------------------------------------------

CHANGELIST = "admin:notifications_notification_changelist"


@pytest.fixture
def ledger(site_a, site_b):
    return {
        "a_pending": ledger_row(site_a),
        "a_failed": ledger_row(site_a, state="failed", stage="overdue-1"),
        "a_ae_sent": ledger_row(site_a, kind="ae_report", state="sent", stage="initial-due-soon"),
        "b_failed": ledger_row(site_b, state="failed", email="coord_b@registry.example"),
    }


def test_ledger_lists_only_the_users_sites(client_a, ledger):
    response = client_a.get(reverse(CHANGELIST))

    assert listed(response) == {ledger[k].pk for k in ("a_pending", "a_failed", "a_ae_sent")}
    assert "coord_b@registry.example" not in response.content.decode()


def test_superuser_sees_the_whole_ledger(client, superuser, ledger):
    superuser.is_staff = True
    superuser.save()
    client.force_login(superuser)

    assert listed(client.get(reverse(CHANGELIST))) == {row.pk for row in ledger.values()}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"state": "failed"}, {"a_failed"}),
        ({"state": "pending"}, {"a_pending"}),
        ({"kind": "ae_report"}, {"a_ae_sent"}),
        ({"kind": "visit_reminder", "state": "failed"}, {"a_failed"}),
        ({"site": "a"}, {"a_pending", "a_failed", "a_ae_sent"}),
        ({"site": "b"}, set()),  # another site's rows stay hidden even when asked for
    ],
)
def test_ledger_filters_by_state_kind_and_site(client_a, ledger, site_a, site_b, query, expected):
    if "site" in query:
        query = {"site__id__exact": (site_a if query.pop("site") == "a" else site_b).pk}

    assert listed(client_a.get(reverse(CHANGELIST), query)) == {ledger[k].pk for k in expected}


def test_ledger_cannot_be_edited_from_the_admin(client_a, ledger):
    response = client_a.post(
        reverse("admin:notifications_notification_change", args=[ledger["a_failed"].pk]), {"state": "sent"}
    )

    assert response.status_code in (302, 403)
    ledger["a_failed"].refresh_from_db()
    assert ledger["a_failed"].state == "failed"


@pytest.fixture
def failed_reminder(study, site_a, coord_a):
    """A visit reminder for coord_a that failed after every attempt, and still applies on NOW's day."""
    patient = transplanted(study, site_a, "A-001")
    with clock(NOW):
        reminders_sweep(now=NOW)
    row = Notification.objects.get(object_id=Visit.objects.get(patient=patient, code="M1").pk)
    Notification.objects.filter(pk=row.pk).update(
        state="failed", attempts=5, last_error="SMTPServerDisconnected('relay down')"
    )
    return row


def resend(client, *rows):
    return client.post(reverse(CHANGELIST), {"action": "resend", "_selected_action": [str(r.pk) for r in rows]})


def test_resend_action_queues_a_failed_row_again(client_a, failed_reminder):
    with clock(NOW + dt.timedelta(hours=1)):
        response = resend(client_a, failed_reminder)

    assert response.status_code == 302
    failed_reminder.refresh_from_db()
    assert (failed_reminder.state, failed_reminder.attempts, failed_reminder.last_error) == ("pending", 0, "")
    assert failed_reminder.send_after == NOW + dt.timedelta(hours=1)
    assert "1 item(s) queued again." in [str(m) for m in get_messages(response.wsgi_request)]


def test_resend_action_refuses_a_sent_row(client_a, site_a, failed_reminder):
    Notification.objects.filter(pk=failed_reminder.pk).update(state="sent", sent_at=NOW)

    with clock(NOW + dt.timedelta(hours=1)):
        response = resend(client_a, failed_reminder)

    failed_reminder.refresh_from_db()
    assert failed_reminder.state == "sent"
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert "0 item(s) queued again." in shown
    assert any("Only failed, cancelled or retrying items can be resent" in m for m in shown)


def test_resend_action_cannot_reach_another_sites_row(client_a, ledger):
    with clock(NOW):
        resend(client_a, ledger["b_failed"])

    ledger["b_failed"].refresh_from_db()
    assert ledger["b_failed"].state == "failed"


# Safety signals ----------------------------------------------------------------------------------------


@pytest.fixture
def signal(study, site_a):
    patient = transplanted(study, site_a, "A-001")
    return SafetySignal.objects.create(
        patient=patient,
        visit=Visit.objects.get(patient=patient, code="D7"),
        kind=fc.SignalKind.THROMBOCYTOPENIA,
        dedupe_key=f"thrombocytopenia:visit:{patient.pk}",
        detail="Platelets 90 x 10^9/L at D7",
    )


def signal_form(**values) -> dict:
    data = {
        "decision": "",
        "review_reason": "",
        "ae_term": "",
        "ae_category": "",
        "ae_grade": "",
        "ae_relatedness": "",
        "ae_onset_date": "",
        "ae_aware_date": "",
        "_save": "Save",
    }
    data.update(values)
    return data


def signal_url(signal) -> str:
    return reverse("admin:followup_safetysignal_change", args=[signal.pk])


def test_signal_page_dismisses_with_a_reason(client_a, coord_a, signal):
    assert client_a.get(signal_url(signal)).status_code == 200

    with clock(NOW):
        response = client_a.post(signal_url(signal), signal_form(decision="dismiss", review_reason="clumped sample"))

    assert response.status_code == 302
    signal.refresh_from_db()
    assert (signal.status, signal.review_reason, signal.reviewed_by) == ("dismissed", "clumped sample", coord_a)


def test_signal_page_accepts_a_signal_as_an_adverse_event(client_a, coord_a, signal):
    with clock(NOW):
        response = client_a.post(
            signal_url(signal),
            signal_form(
                decision="accept",
                review_reason="confirmed on repeat count",
                ae_term="Thrombocytopenia",
                ae_category=fc.AECategory.CYTOPENIA,
                ae_grade="2",
                ae_relatedness=fc.Relatedness.UNLIKELY,
                ae_expected="on",
                ae_onset_date="2026-01-22",
                ae_aware_date="2026-01-23",
            ),
        )

    assert response.status_code == 302
    signal.refresh_from_db()
    assert signal.status == "accepted" and signal.reviewed_by == coord_a
    assert (signal.adverse_event.term, signal.adverse_event.grade, signal.adverse_event.expected) == (
        "Thrombocytopenia",
        2,
        True,
    )


def test_signal_page_refuses_a_dismissal_without_a_reason(client_a, signal):
    with clock(NOW):
        response = client_a.post(signal_url(signal), signal_form(decision="dismiss"))

    assert response.status_code == 200
    assert "review_reason" in response.context["adminform"].form.errors
    signal.refresh_from_db()
    assert signal.status == "open"


def test_signal_page_needs_a_decision(client_a, signal):
    with clock(NOW):
        response = client_a.post(signal_url(signal), signal_form(review_reason="looked at it"))

    assert response.status_code == 200
    assert "decision" in response.context["adminform"].form.errors
    signal.refresh_from_db()
    assert signal.status == "open"


def test_coordinator_of_another_site_cannot_open_the_signal(client, coord_b, signal):
    client.force_login(coord_b)

    page = client.get(signal_url(signal))
    with clock(NOW):
        post = client.post(signal_url(signal), signal_form(decision="dismiss", review_reason="not mine"))

    for response in (page, post):
        assert response.status_code == 302 and response.url == reverse("admin:index")
    assert listed(client.get(reverse("admin:followup_safetysignal_changelist"))) == set()
    signal.refresh_from_db()
    assert signal.status == "open"


# E-mail preferences ------------------------------------------------------------------------------------


@pytest.fixture
def preferences(coord_a, coord_b):
    return (
        NotificationPreference.objects.create(user=coord_a),
        NotificationPreference.objects.create(user=coord_b, language="zh-hans"),
    )


def preference_url(pref) -> str:
    return reverse("admin:notifications_notificationpreference_change", args=[pref.pk])


def test_preference_list_shows_only_the_users_own_row(client_a, preferences):
    response = client_a.get(reverse("admin:notifications_notificationpreference_changelist"))

    assert listed(response) == {preferences[0].pk}


def test_user_edits_their_own_preferences(client_a, coord_a, preferences):
    own = preferences[0]
    assert client_a.get(preference_url(own)).status_code == 200

    response = client_a.post(
        preference_url(own), {"language": "zh-hans", "paused_until": "2026-03-01", "_save": "Save"}
    )

    assert response.status_code == 302
    own.refresh_from_db()
    assert (own.user, own.language, own.digest, own.paused_until, own.unsubscribed) == (
        coord_a,
        "zh-hans",
        False,
        D(2026, 3, 1),
        False,
    )


def test_user_cannot_open_or_edit_someone_elses_preferences(client_a, preferences):
    other = preferences[1]

    page = client_a.get(preference_url(other))
    post = client_a.post(preference_url(other), {"language": "en", "unsubscribed": "on", "_save": "Save"})

    for response in (page, post):
        assert response.status_code in (302, 403, 404)
        assert response.status_code != 302 or response.url == reverse("admin:index")
    other.refresh_from_db()
    assert (other.language, other.unsubscribed) == ("zh-hans", False)


def test_user_adds_preferences_for_themselves_only(client_a, coord_a, coord_b):
    response = client_a.post(
        reverse("admin:notifications_notificationpreference_add"),
        {"user": str(coord_b.pk), "language": "zh-hans", "digest": "on", "_save": "Save"},
    )

    assert response.status_code == 302
    pref = NotificationPreference.objects.get()
    assert (pref.user, pref.language, pref.digest) == (coord_a, "zh-hans", True)
