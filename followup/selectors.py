"""Reads of the followup app that are more than one filter."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from followup.models import AdverseEvent
from patients.models import Patient, TransplantEvent
from registry.models import CellProduct


def lot_lookback(*, lot: CellProduct, user=None, site_ids=None) -> QuerySet[Patient]:
    """Every patient who received `lot` (within the caller's sites), with those infusions and all their AEs.

    Three queries whatever the number of patients: patients, their infusions of the lot, their AEs.
    """
    patients = Patient.objects.all()
    if user is not None:
        patients = patients.for_user(user)
    if site_ids is not None:
        patients = patients.for_sites(site_ids)
    return (
        patients.filter(pk__in=TransplantEvent.objects.filter(lot=lot).values("patient_id"))
        .select_related("site", "study")
        .prefetch_related(
            Prefetch(
                "transplants",
                queryset=TransplantEvent.objects.filter(lot=lot).order_by("infusion_number"),
                to_attr="lot_infusions",
            ),
            Prefetch("adverse_events", queryset=AdverseEvent.objects.order_by("onset_date"), to_attr="all_aes"),
        )
        .order_by("subject_code")
    )


UNCODED_SHOWN = 50  # the oldest uncoded adverse events the worklist lists


def uncoded_adverse_events(*, user) -> list[AdverseEvent]:
    """The oldest adverse events of the user's sites not yet coded to MedDRA, once the centre has loaded a
    release (none before: nothing could be coded). One query either way."""
    from django.db.models import Exists

    from followup.models import MedDRARelease

    return list(
        AdverseEvent.objects.for_user(user)
        .filter(Exists(MedDRARelease.objects.all()), meddra_term__isnull=True)
        .select_related("patient__site")
        .order_by("onset_date", "pk")[:UNCODED_SHOWN]
    )


def worklist(*, user, now=None, horizon_days: int = 14) -> dict:
    """A coordinator's day: their sites' visits in progress (entered, not complete), due, overdue or coming
    within `horizon_days`, expedited reports due or late, safety signals to review and adverse events not
    yet coded to MedDRA, with counts per site. A fixed number of queries."""
    import datetime as dt
    from collections import Counter

    from django.db.models import Q
    from django.utils import timezone

    from followup.constants import VisitState
    from followup.models import Visit
    from followup.services import ae_report_clock
    from patients.constants import INACTIVE_STATUSES
    from registry.models import Site

    now = now or timezone.now()
    sites = {s.pk: s for s in Site.objects.for_user(user)}
    horizon = max((s.today(now) for s in sites.values()), default=now.date()) + dt.timedelta(days=horizon_days)
    visits = (
        Visit.objects.for_user(user)
        .with_state(now)
        # In progress: until completed, whatever the patient's status since; the others: patients followed.
        .filter(
            Q(state=VisitState.IN_PROGRESS)
            | Q(state__in=[VisitState.DUE, VisitState.OVERDUE, VisitState.SCHEDULED], window_start__lte=horizon)
            & ~Q(patient__status__in=INACTIVE_STATUSES)
        )
        .select_related("patient__site")
        .order_by("window_end", "patient__subject_code")
    )
    rows = []
    for visit in visits:
        if visit.state == VisitState.SCHEDULED and visit.window_start > visit.site_today + dt.timedelta(
            days=horizon_days
        ):
            continue
        rows.append(_with_days(visit))
    reports = []
    for ae in (
        AdverseEvent.objects.for_user(user).filter(initial_report_due__isnull=False).select_related("patient__site")
    ):
        for item in ae_report_clock(ae, ae.patient.site.today(now)):
            if item["state"] in ("due", "overdue"):
                reports.append({"ae": ae, **item, "days_late": -item["days_left"]})
    reports.sort(key=lambda r: r["due"])
    signals, tasks = open_safety_findings(user)
    uncoded = uncoded_adverse_events(user=user)
    counts = Counter()
    for visit in rows:
        counts[(visit.patient.site.code, visit.state)] += 1
    for report in reports:
        counts[(report["ae"].patient.site.code, "reports")] += 1
    for signal in signals:
        counts[(signal.patient.site.code, "signals")] += 1
    per_site = [
        {
            "site": site.code,
            "in_progress": counts[(site.code, VisitState.IN_PROGRESS)],
            "overdue": counts[(site.code, VisitState.OVERDUE)],
            "due": counts[(site.code, VisitState.DUE)],
            "upcoming": counts[(site.code, VisitState.SCHEDULED)],
            "reports": counts[(site.code, "reports")],
            "signals": counts[(site.code, "signals")],
            **{"today": site.today(now), "time_zone": site.time_zone},
        }
        for site in sorted(sites.values(), key=lambda s: s.code)
    ]
    return {
        "in_progress": [v for v in rows if v.state == VisitState.IN_PROGRESS],
        "overdue": [v for v in rows if v.state == VisitState.OVERDUE],
        "due": [v for v in rows if v.state == VisitState.DUE],
        "upcoming": [v for v in rows if v.state == VisitState.SCHEDULED],
        "reports": reports,
        "signals": signals,
        "tasks": tasks,
        "uncoded": uncoded,
        "per_site": per_site,
        "horizon_days": horizon_days,
    }


def _with_days(visit):
    """The worklist visit with `days`, counted at its site's today: since it was seen (in progress), late
    since its window closed (overdue), left until its window closes (due), until its window opens (coming)."""
    from followup.constants import VisitState

    today = visit.site_today
    if visit.state == VisitState.IN_PROGRESS:
        visit.days = (today - visit.actual_date).days if visit.actual_date else 0
    elif visit.state == VisitState.OVERDUE:
        visit.days = (today - visit.window_end).days
    elif visit.state == VisitState.DUE:
        visit.days = (visit.window_end - today).days
    else:
        visit.days = (visit.window_start - today).days
    return visit


def open_safety_findings(user) -> tuple[list, list]:
    """The open findings of the user's sites, the most severe first (one query): the signals to review, and
    the routine checks (the yearly malignancy question), which are worklist tasks."""
    from followup.constants import SignalSeverity, SignalStatus
    from followup.models import SafetySignal

    findings = list(
        SafetySignal.objects.for_user(user)
        .filter(status=SignalStatus.OPEN)
        .select_related("patient__site", "visit")
        .order_by("-severity", "created_at", "pk")
    )
    routine = [s for s in findings if s.severity == SignalSeverity.ROUTINE]
    return [s for s in findings if s.severity != SignalSeverity.ROUTINE], routine


def next_overdue_visit(*, user, exclude_pk=None, now=None):
    """The overdue visit of the user's sites whose window closed first (patients followed), other than
    `exclude_pk`; None when nothing else is overdue. One query."""
    from followup.constants import VisitState
    from followup.models import Visit
    from patients.constants import INACTIVE_STATUSES

    visits = (
        Visit.objects.for_user(user)
        .with_state(now)
        .filter(state=VisitState.OVERDUE)
        .exclude(patient__status__in=INACTIVE_STATUSES)
        .exclude(pk=exclude_pk)
        .order_by("window_end", "patient__subject_code", "target_date")
    )
    return visits.only("pk").first()
