"""Visit state, derived in exactly one place for the admin, the API and the reminders.

A visit's recorded outcome (in progress, completed, missed, not required) wins; an open visit is *scheduled* before
its window opens, *due* while it is open, and *overdue* once it has closed. "Today" is the calendar date in
the patient's site's time zone, so a visit in Nanjing turns due at local midnight, not UTC midnight.
`visit_state` decides for one visit in Python; `VisitQuerySet.with_state` decides for many in SQL with the
same rules (a test holds the two together).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.db import models
from django.db.models import Case, CharField, DateField, Value, When
from django.utils import timezone

from followup.constants import VisitOutcome, VisitState
from registry.models import SiteScopedQuerySet


def site_today(site, now: dt.datetime | None = None) -> dt.date:
    """Today's date at `site` (its IANA zone) at the instant `now` (default: now)."""
    return site.today(now)


def visit_state(*, outcome: str, window_start: dt.date, window_end: dt.date, today: dt.date) -> VisitState:
    if outcome != VisitOutcome.OPEN:
        return VisitState(outcome)
    if today < window_start:
        return VisitState.SCHEDULED
    if today <= window_end:
        return VisitState.DUE
    return VisitState.OVERDUE


def _today_expression(now: dt.datetime, sites=None) -> Case | Value:
    """Per-site 'today' as an SQL expression: one WHEN per site (sites are few). `sites`: the sites the
    visits are known to belong to (Site rows), read from the database otherwise; with one, a plain value."""
    from registry.models import Site

    zones = [(site.pk, site.time_zone) for site in sites] if sites is not None else None
    if zones is not None and len(zones) == 1:
        return Value(now.astimezone(zoneinfo.ZoneInfo(zones[0][1])).date(), output_field=DateField())
    whens = [
        When(patient__site_id=site_id, then=Value(now.astimezone(zoneinfo.ZoneInfo(tz)).date()))
        for site_id, tz in (zones if zones is not None else Site.objects.values_list("id", "time_zone"))
    ]
    utc_today = Value(now.astimezone(dt.UTC).date(), output_field=DateField())
    if not whens:
        return utc_today
    return Case(*whens, default=utc_today, output_field=DateField())


class VisitQuerySet(SiteScopedQuerySet):
    def with_state(self, now: dt.datetime | None = None, *, sites=None) -> VisitQuerySet:
        """Annotate `state` (a VisitState value) and `site_today` on every visit. `sites`: when the visits are
        known to be of these sites only (a queryset scoped to them), their rows, so no query reads them."""
        now = now or timezone.now()
        qs = self.annotate(site_today=_today_expression(now, sites))
        return qs.annotate(
            state=Case(
                When(outcome=VisitOutcome.COMPLETED, then=Value(VisitState.COMPLETED.value)),
                When(outcome=VisitOutcome.IN_PROGRESS, then=Value(VisitState.IN_PROGRESS.value)),
                When(outcome=VisitOutcome.MISSED, then=Value(VisitState.MISSED.value)),
                When(outcome=VisitOutcome.NOT_REQUIRED, then=Value(VisitState.NOT_REQUIRED.value)),
                When(window_start__gt=models.F("site_today"), then=Value(VisitState.SCHEDULED.value)),
                When(window_end__gte=models.F("site_today"), then=Value(VisitState.DUE.value)),
                default=Value(VisitState.OVERDUE.value),
                output_field=CharField(),
            )
        )

    def in_state(self, *states: str, now: dt.datetime | None = None) -> VisitQuerySet:
        return self.with_state(now).filter(state__in=[str(s) for s in states])
