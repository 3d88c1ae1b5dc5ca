"""Failed and long-retrying e-mail on the admin home (count, link, Resend) and a banner on every admin page
while any e-mail failed in the last day, for the users of the sites concerned."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from notifications.models import Notification
from notifications.selectors import email_trouble
from registry.constants import Role
from tests.notifications.test_notification_admin import NOW, clock, ledger_row, listed, member

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:notifications_notification_changelist")


@pytest.fixture
def trouble(site_a, site_b):
    """At site A: one item failed an hour ago, one failed two days ago, one retrying for 2 hours, one
    retrying for 10 minutes, one pending; at site B one failed an hour ago."""
    rows = {
        "failed": ledger_row(site_a, state="failed"),
        "failed_old": ledger_row(site_a, state="failed"),
        "retrying": ledger_row(site_a, state="pending"),
        "retrying_briefly": ledger_row(site_a, state="pending"),
        "pending": ledger_row(site_a, state="pending"),
        "failed_b": ledger_row(site_b, state="failed"),
    }
    hour = dt.timedelta(hours=1)
    for name, first, failed in [
        ("failed", NOW - 2 * hour, NOW - hour),
        ("failed_old", NOW - 50 * hour, NOW - 48 * hour),
        ("retrying", NOW - 2 * hour, None),
        ("retrying_briefly", NOW - dt.timedelta(minutes=10), None),
        ("failed_b", NOW - 2 * hour, NOW - hour),
    ]:
        Notification.objects.filter(pk=rows[name].pk).update(
            first_attempt_at=first, failed_at=failed, last_error="temporary (451): try later", attempts=3
        )
    return rows


def test_counts_are_scoped_to_the_users_sites(site_a, site_b, trouble):
    with clock(NOW):
        assert email_trouble(user=member("dm_a", site_a, Role.DATA_MANAGER)) == email_trouble(
            user=member("co_a", site_a)
        )
        seen_a = email_trouble(user=member("dm_a2", site_a, Role.DATA_MANAGER))
        seen_b = email_trouble(user=member("co_b", site_b))

    assert (seen_a.failed, seen_a.retrying, seen_a.failed_last_day) == (2, 1, 1)
    assert (seen_b.failed, seen_b.retrying, seen_b.failed_last_day) == (1, 0, 1)


def test_admin_home_shows_the_counts_with_links_to_the_filtered_ledger(client, site_a, trouble):
    client.force_login(member("dm_a", site_a, Role.DATA_MANAGER))

    with clock(NOW):
        page = client.get("/admin/").content.decode()
        failed = listed(client.get(CHANGELIST, {"trouble": "failed"}))
        retrying = listed(client.get(CHANGELIST, {"trouble": "retrying"}))

    assert 'id="email-trouble"' in page
    assert "2 e-mail items failed" in page and "1 e-mail item retrying for more than an hour" in page
    assert f'href="{CHANGELIST}?trouble=failed"' in page and f'href="{CHANGELIST}?trouble=retrying"' in page
    assert failed == {trouble["failed"].pk, trouble["failed_old"].pk}
    assert retrying == {trouble["retrying"].pk}


def test_resend_action_requeues_failed_and_retrying_items_once(client, site_a, study, trouble):
    from tests.notifications.test_notification_admin import transplanted

    patient = transplanted(study, site_a, "A-001")
    visit_id = patient.visits.get(code="M1").pk
    for name, username in (("failed", "co_1"), ("retrying", "co_2")):
        person = member(username, site_a)
        Notification.objects.filter(pk=trouble[name].pk).update(
            object_id=visit_id, recipient_email=person.email, recipient_user=person
        )
    client.force_login(member("dm_a", site_a, Role.DATA_MANAGER))
    chosen = [trouble["failed"].pk, trouble["retrying"].pk]

    with clock(NOW):
        client.post(CHANGELIST, {"action": "resend", "_selected_action": chosen})
        again = client.post(CHANGELIST, {"action": "resend", "_selected_action": chosen}, follow=True)

    rows = Notification.objects.filter(pk__in=chosen)
    assert {(r.state, r.send_after, r.attempts, r.first_attempt_at, r.last_error) for r in rows} == {
        ("pending", NOW, 0, None, "")
    }
    shown = [str(m) for m in again.context["messages"]]
    assert "0 item(s) queued again." in shown, "a second Resend queues nothing more"


def test_banner_on_every_admin_page_while_an_e_mail_failed_in_the_last_day(client, site_a, trouble):
    client.force_login(member("dm_a", site_a, Role.DATA_MANAGER))

    with clock(NOW):
        pages = [client.get(url).content.decode() for url in ("/admin/", CHANGELIST, "/admin/followup/visit/")]

    for page in pages:
        assert 'id="email-alert"' in page
        assert "1 e-mail failed in the last day" in page


def test_no_banner_once_the_last_failure_is_a_day_old(client, site_a, trouble):
    client.force_login(member("dm_a", site_a, Role.DATA_MANAGER))

    with clock(NOW + dt.timedelta(hours=23, minutes=1)):
        page = client.get("/admin/followup/visit/").content.decode()

    assert 'id="email-alert"' not in page


def test_no_banner_for_a_site_whose_e_mail_works(client, site_a, site_b, trouble):
    Notification.objects.filter(pk=trouble["failed_b"].pk).delete()
    client.force_login(member("co_b", site_b))

    with clock(NOW):
        page = client.get("/admin/").content.decode()

    assert 'id="email-alert"' not in page and 'id="email-trouble"' not in page
