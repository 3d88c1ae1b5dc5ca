"""Reads of the notification ledger for the admin: e-mail that failed or keeps failing, at the caller's sites."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlencode

from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from notifications.constants import NotificationState
from notifications.models import Notification

# An item retrying after temporary errors for longer than this is shown beside the failed ones.
RETRYING_SHOWN_AFTER = dt.timedelta(hours=1)
# The banner stays while any item failed within this time.
ALERT_FOR = dt.timedelta(days=1)

FAILED, RETRYING = "failed", "retrying"


def trouble_filter(which: str, now: dt.datetime | None = None) -> Q:
    """Items that failed (`failed`), or that have been retrying for more than an hour (`retrying`)."""
    now = now or timezone.now()
    if which == FAILED:
        return Q(state=NotificationState.FAILED)
    return (
        Q(state__in=[NotificationState.PENDING, NotificationState.SENDING])
        & Q(first_attempt_at__lte=now - RETRYING_SHOWN_AFTER)
        & ~Q(last_error="")
    )


@dataclass(frozen=True)
class EmailTrouble:
    failed: int
    retrying: int
    failed_last_day: int

    @property
    def any(self) -> bool:
        return bool(self.failed or self.retrying)

    @property
    def failed_url(self) -> str:
        return _changelist(FAILED)

    @property
    def retrying_url(self) -> str:
        return _changelist(RETRYING)


def _changelist(which: str) -> str:
    return reverse("admin:notifications_notification_changelist") + "?" + urlencode({"trouble": which})


def email_trouble(*, user, now: dt.datetime | None = None) -> EmailTrouble:
    """Counts of failed and long-retrying e-mail items at the user's sites (one query)."""
    now = now or timezone.now()
    # Only the failed and retrying rows are read (two partial indexes), not the whole ledger of the sites.
    rows = Notification.objects.for_user(user).filter(trouble_filter(FAILED, now) | trouble_filter(RETRYING, now))
    counts = rows.aggregate(
        failed=Count("pk", filter=trouble_filter(FAILED, now)),
        retrying=Count("pk", filter=trouble_filter(RETRYING, now)),
        failed_last_day=Count("pk", filter=trouble_filter(FAILED, now) & Q(failed_at__gte=now - ALERT_FOR)),
    )
    return EmailTrouble(**counts)
