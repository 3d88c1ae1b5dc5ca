"""Visit states: one rule, in Python (`visit_state`, `Visit.state`) and in SQL (`with_state`), per site day."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from followup.constants import VisitOutcome, VisitState
from followup.models import Visit
from followup.states import site_today, visit_state
from patients.services import transplant_record
from tests.factories import CellProductFactory, PatientFactory

pytestmark = pytest.mark.django_db

D = dt.date
UTC = dt.UTC
WINDOW = {"window_start": D(2026, 7, 2), "window_end": D(2026, 7, 30)}


@pytest.mark.parametrize(
    ("outcome", "today", "expected"),
    [
        (VisitOutcome.OPEN, D(2026, 7, 1), VisitState.SCHEDULED),
        (VisitOutcome.OPEN, D(2026, 7, 2), VisitState.DUE),  # the window's first day
        (VisitOutcome.OPEN, D(2026, 7, 15), VisitState.DUE),
        (VisitOutcome.OPEN, D(2026, 7, 30), VisitState.DUE),  # the window's last day
        (VisitOutcome.OPEN, D(2026, 7, 31), VisitState.OVERDUE),
        (VisitOutcome.COMPLETED, D(2026, 8, 30), VisitState.COMPLETED),
        (VisitOutcome.COMPLETED, D(2026, 6, 1), VisitState.COMPLETED),
        (VisitOutcome.MISSED, D(2026, 8, 30), VisitState.MISSED),
        (VisitOutcome.NOT_REQUIRED, D(2026, 7, 15), VisitState.NOT_REQUIRED),
    ],
)
def test_visit_state(outcome, today, expected):
    assert visit_state(outcome=outcome, today=today, **WINDOW) == expected


def test_site_today_is_the_date_in_the_site_zone(site_a, site_b):
    moment = dt.datetime(2026, 7, 1, 17, 0, tzinfo=UTC)

    assert site_today(site_a, moment) == D(2026, 7, 2)  # 01:00 in Shanghai
    assert site_today(site_b, moment) == D(2026, 7, 1)  # 18:00 in London (BST)


@pytest.fixture
def patients(study, site_a, site_b):
    """One patient per site, each with day 0 on 2026-01-15 local, and one visit of every recorded outcome.

    Windows (both patients): BL 01-01..01-15, D7 01-20..01-24, M1 02-07..02-21, M3 04-02..04-30,
    M6 07-02..07-30, M9 10-02..10-30, M12 2026-12-16..2027-02-14.
    """
    made = {}
    with time_machine.travel(dt.datetime(2026, 9, 1, 9, 0, tzinfo=UTC), tick=False):
        for site, code in ((site_a, "A-001"), (site_b, "B-001")):
            patient = PatientFactory(study=study, site=site, subject_code=code)
            lot = CellProductFactory(study=study, site=site)
            transplant_record(
                patient=patient,
                lot=lot,
                infused_at=dt.datetime(2026, 1, 15, 10, 0, tzinfo=site.zone),
                weight_kg=Decimal("58.0"),
                dose_cells_per_kg=1_000_000,
            )
            visits = Visit.objects.filter(patient=patient)
            visits.filter(code="BL").update(outcome=VisitOutcome.COMPLETED, actual_date=D(2026, 1, 14))
            visits.filter(code="D7").update(outcome=VisitOutcome.MISSED, outcome_reason="patient unwell")
            visits.filter(code="M60").update(outcome=VisitOutcome.NOT_REQUIRED, outcome_reason="study ends earlier")
            made[code] = patient
    return made


INSTANTS = [
    dt.datetime(2026, 1, 10, 0, 0, tzinfo=UTC),
    dt.datetime(2026, 2, 21, 15, 59, tzinfo=UTC),  # 23:59 on 02-21 in Shanghai: M1 still due there
    dt.datetime(2026, 2, 21, 16, 0, tzinfo=UTC),  # 00:00 on 02-22 in Shanghai: M1 overdue there, due in London
    dt.datetime(2026, 4, 30, 16, 30, tzinfo=UTC),  # 05-01 in Shanghai, 04-30 in London
    dt.datetime(2026, 7, 1, 17, 0, tzinfo=UTC),  # 07-02 in Shanghai, 07-01 in London
    dt.datetime(2026, 7, 1, 23, 30, tzinfo=UTC),  # 07-02 in both (London is on BST)
    dt.datetime(2026, 12, 15, 23, 30, tzinfo=UTC),  # 12-16 in Shanghai, 12-15 in London (GMT)
    dt.datetime(2027, 3, 1, 12, 0, tzinfo=UTC),
]


@pytest.mark.parametrize("now", INSTANTS, ids=[i.isoformat() for i in INSTANTS])
def test_sql_state_agrees_with_python_state_for_every_visit(patients, now):
    annotated = Visit.objects.filter(patient__in=patients.values()).with_state(now=now)
    fresh = {visit.pk: visit for visit in Visit.objects.select_related("patient__site")}

    assert annotated.count() == 24
    for row in annotated:
        visit = fresh[row.pk]
        today = site_today(visit.patient.site, now)
        assert row.site_today == today, visit
        assert row.state == visit.current_state(today), (visit, now)


@pytest.mark.parametrize("now", INSTANTS, ids=[i.isoformat() for i in INSTANTS])
def test_sql_state_of_one_sites_visits_from_its_row_agrees_with_the_general_expression(patients, now):
    # The API scopes visits to the key's site and passes that site's row: today becomes one value.
    for patient in patients.values():
        visits = Visit.objects.filter(patient__site=patient.site)
        general = dict(visits.with_state(now=now).values_list("pk", "state"))
        with CaptureQueriesContext(connection) as captured:
            scoped = dict(visits.with_state(now=now, sites=[patient.site]).values_list("pk", "state"))
        assert scoped == general and len(general) >= 12
        assert len(captured.captured_queries) == 1  # the visits only: no query for the sites' time zones


def _states(now, patient):
    return dict(Visit.objects.filter(patient=patient).with_state(now=now).values_list("code", "state"))


def test_window_opens_at_local_midnight_in_shanghai_not_utc_midnight(patients):
    now = dt.datetime(2026, 7, 1, 17, 0, tzinfo=UTC)

    assert _states(now, patients["A-001"])["M6"] == VisitState.DUE
    assert _states(now, patients["B-001"])["M6"] == VisitState.SCHEDULED


def test_window_closes_at_local_midnight(patients):
    now = dt.datetime(2026, 4, 30, 16, 30, tzinfo=UTC)

    assert _states(now, patients["A-001"])["M3"] == VisitState.OVERDUE
    assert _states(now, patients["B-001"])["M3"] == VisitState.DUE


def test_every_state_at_one_instant(patients):
    now = dt.datetime(2026, 7, 10, 12, 0, tzinfo=UTC)

    states = _states(now, patients["A-001"])

    assert states["BL"] == VisitState.COMPLETED
    assert states["D7"] == VisitState.MISSED
    assert states["M1"] == VisitState.OVERDUE
    assert states["M3"] == VisitState.OVERDUE
    assert states["M6"] == VisitState.DUE
    assert states["M9"] == VisitState.SCHEDULED
    assert states["M60"] == VisitState.NOT_REQUIRED


def test_in_state_filters_on_the_derived_state(patients):
    now = dt.datetime(2026, 7, 1, 17, 0, tzinfo=UTC)

    due = Visit.objects.in_state(VisitState.DUE, now=now)

    assert list(due.values_list("patient__subject_code", "code")) == [("A-001", "M6")]


def test_visit_state_without_a_date_uses_today_at_the_site(patients):
    m6_a = Visit.objects.get(patient=patients["A-001"], code="M6")
    m6_b = Visit.objects.get(patient=patients["B-001"], code="M6")

    with time_machine.travel(dt.datetime(2026, 7, 1, 17, 0, tzinfo=UTC), tick=False):
        assert m6_a.current_state() == VisitState.DUE
        assert m6_b.current_state() == VisitState.SCHEDULED
        assert Visit.objects.get(pk=m6_a.pk).current_state() == VisitState.DUE
        assert Visit.objects.with_state().get(pk=m6_b.pk).state == VisitState.SCHEDULED
