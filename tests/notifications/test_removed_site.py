"""A site removed from a study records nothing more for it, and gets no reminder for its visits either."""

from __future__ import annotations

import pytest

from notifications.models import Notification
from registry.constants import Role
from registry.services import study_remove_site
from tests.notifications.test_reminders import clock, member, send, sh, sweep, transplanted

pytestmark = pytest.mark.django_db


@pytest.fixture
def removed(study, site_a, superuser):
    def remove():
        with clock(sh(2, 9)):
            study_remove_site(study=study, site=site_a, reason="Site closed its MSC programme", actor=superuser)

    return remove


def test_the_sweep_makes_no_reminder_for_visits_at_a_site_removed_from_the_study(study, site_a, site_b, removed):
    transplanted(study, site_a, "A-001")
    transplanted(study, site_b, "B-001")
    member("coord_a", site_a, Role.COORDINATOR)
    coord_b = member("coord_b", site_b, Role.COORDINATOR)
    removed()

    report = sweep(sh(2, 10))

    assert report.inserted == 1
    assert list(Notification.objects.values_list("recipient_email", flat=True)) == [coord_b.email]


def test_the_dry_run_agrees(study, site_a, removed):
    transplanted(study, site_a, "A-001")
    member("coord_a", site_a, Role.COORDINATOR)
    removed()

    assert sweep(sh(2, 10), dry_run=True).rows == []


def test_a_reminder_queued_before_the_site_was_removed_is_cancelled_at_send_time(study, site_a, removed):
    transplanted(study, site_a, "A-001")
    member("coord_a", site_a, Role.COORDINATOR)
    sweep(sh(2, 10, hour=7))
    removed()

    report = send(sh(2, 10, hour=9))

    row = Notification.objects.get()
    assert (report.emails, report.cancelled, row.state) == (0, 1, "cancelled")
    assert row.last_error == "the site was removed from the study"
