"""What an outcome depends on: its own visit, the baseline and the visits before it, never a later visit.

Recording a visit recomputes only the outcomes from its date on (`followup.services`, `since`); that is
right only while this holds, so it is checked here over random courses, and end to end through the service.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from followup import outcomes as o
from followup.models import ComputedOutcome, Visit
from followup.services import outcomes_recompute_patients, visit_record
from tests.factories import DAY_ZERO, make_clinical

values = st.fixed_dictionaries(
    {
        "SLEDAI2K": st.integers(0, 30).map(Decimal),
        "PGA": st.integers(0, 30).map(lambda n: Decimal(n) / 10),
        "PROT24H": st.integers(0, 60).map(lambda n: Decimal(n) / 10),
        "EGFR": st.integers(20, 120).map(Decimal),
    }
)
courses = st.lists(st.tuples(values, st.integers(0, 40).map(Decimal)), min_size=3, max_size=8)


def points_of(course) -> list[o.VisitPoint]:
    start = dt.date(2025, 1, 1)
    return [
        o.VisitPoint(
            visit_id=index + 1,
            date=start + dt.timedelta(days=30 * index),
            day=30 * index,
            is_baseline_visit=index == 0,
            values=visit_values,
            prednisone_mg=prednisone,
            weight_kg=Decimal("60"),
        )
        for index, (visit_values, prednisone) in enumerate(course)
    ]


@settings(max_examples=200, deadline=None)
@given(course=courses, changed=values, prednisone=st.integers(0, 40).map(Decimal), data=st.data())
def test_changing_a_later_visit_leaves_every_earlier_outcome_as_it_was(course, changed, prednisone, data):
    points = points_of(course)
    at = data.draw(st.integers(1, len(points) - 1), label="changed visit")
    before = {out.visit_id: out for out in o.compute_outcomes(points)}
    points[at] = dataclasses.replace(points[at], values=changed, prednisone_mg=prednisone)
    after = {out.visit_id: out for out in o.compute_outcomes(points)}
    for visit_id in range(2, at + 1):  # every post-baseline visit before the changed one (ids start at 1)
        assert after[visit_id] == before[visit_id]


@settings(max_examples=200, deadline=None)
@given(course=courses, data=st.data())
def test_outcomes_since_a_date_are_the_full_computation_from_that_date_on(course, data):
    points = points_of(course)
    since = points[data.draw(st.integers(0, len(points) - 1), label="since visit")].date
    full = [out for out in o.compute_outcomes(points) if points[out.visit_id - 1].date >= since]
    assert o.compute_outcomes(points, since=since) == full
    # Of the post-transplant visits before `since`, only EARLIER_VISIT_CODES are read.
    trimmed = [
        point
        if point.day <= 0 or point.date >= since
        else dataclasses.replace(point, values={k: v for k, v in point.values.items() if k in o.EARLIER_VISIT_CODES})
        for point in points
    ]
    assert o.compute_outcomes(trimmed, since=since) == full


@pytest.mark.django_db
def test_recording_a_visit_rewrites_no_earlier_outcome_and_a_full_recompute_finds_nothing_to_do():
    clinical = make_clinical()
    visits = {v.code: v for v in Visit.objects.filter(patient=clinical.patient)}
    for code, day, sledai in (("BL", 0, 12), ("M1", 30, 8), ("M3", 91, 4)):
        visit_record(visit=visits[code], actual_date=DAY_ZERO + dt.timedelta(days=day), results={"SLEDAI2K": sledai})
    stamps = dict(ComputedOutcome.objects.values_list("visit__code", "computed_at"))
    visit_record(visit=visits["M6"], actual_date=DAY_ZERO + dt.timedelta(days=182), results={"SLEDAI2K": 9})
    after = dict(ComputedOutcome.objects.values_list("visit__code", "computed_at"))
    assert {code: after[code] for code in stamps} == stamps  # M1 and M3 untouched
    assert ComputedOutcome.objects.get(visit__code="M6").flare == o.FLARE_MILD_MODERATE  # 4 -> 9
    assert outcomes_recompute_patients([clinical.patient.pk]) == 0

    # A new baseline changes every outcome.
    visit_record(visit=visits["BL"], actual_date=DAY_ZERO, results={"SLEDAI2K": 6}, reason="Total re-scored from notes")
    assert ComputedOutcome.objects.get(visit__code="M3").sledai_change == Decimal("-2")
    assert outcomes_recompute_patients([clinical.patient.pk]) == 0


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["one", "batch"])
def test_a_visit_corrected_to_before_day_zero_is_refused_and_keeps_its_outcome(path):
    """A deviation reason covers a date outside the window, never a post-transplant visit before day 0."""
    from followup.services import VisitEntry, visits_record_batch

    clinical = make_clinical()
    visits = {v.code: v for v in Visit.objects.filter(patient=clinical.patient)}
    visit_record(visit=visits["BL"], actual_date=DAY_ZERO, results={"SLEDAI2K": 12})
    visit_record(visit=visits["D7"], actual_date=DAY_ZERO + dt.timedelta(days=7), results={"SLEDAI2K": 8})
    assert ComputedOutcome.objects.filter(visit=visits["D7"]).exists()
    before = DAY_ZERO - dt.timedelta(days=1)
    entry = VisitEntry(before, {"SLEDAI2K": 8}, deviation_reason="seen before the infusion", reason="date corrected")
    field = "actual_date" if path == "one" else "visits.0.actual_date"
    with pytest.raises(ValidationError) as refused:
        if path == "one":
            visit_record(visit=visits["D7"], **vars(entry))
        else:
            visits_record_batch(
                site=clinical.site,
                study_code=clinical.study.code,
                entries=[(clinical.patient.subject_code, "D7", entry)],
            )
    assert "after day 0 (2025-03-03)" in " ".join(refused.value.message_dict[field])
    visits["D7"].refresh_from_db()
    assert visits["D7"].actual_date == DAY_ZERO + dt.timedelta(days=7)
    assert ComputedOutcome.objects.filter(visit=visits["D7"]).exists()


@pytest.mark.django_db
def test_corrections_recompute_from_their_date_exactly_as_a_full_recompute_would():
    """Remission, then a flare that is a relapse; corrections that undo the remission and move a visit
    earlier: after each, the outcomes stored from the correction's date on are what a full recompute gives."""
    clinical = make_clinical()
    visits = {v.code: v for v in Visit.objects.filter(patient=clinical.patient)}
    day = {code: DAY_ZERO + dt.timedelta(days=n) for code, n in (("BL", 0), ("D7", 7), ("M1", 30), ("M3", 91))}
    for code, sledai in (("BL", 12), ("D7", 2), ("M1", 6), ("M3", 6)):
        visit_record(visit=visits[code], actual_date=day[code], results={"SLEDAI2K": sledai, "PRED": 5})

    def outcome(code):
        return ComputedOutcome.objects.get(visit=visits[code])

    assert (outcome("D7").remission, outcome("M1").flare, outcome("M1").relapse) == ("complete", "mild_moderate", True)
    # D7 re-scored: no remission, so the flare at M1 is gone and no relapse can follow.
    visit_record(
        visit=visits["D7"], actual_date=day["D7"], results={"SLEDAI2K": 11, "PRED": 5}, reason="Re-scored from notes"
    )
    assert (outcome("D7").remission, outcome("M1").flare, outcome("M1").relapse) == ("none", "none", False)
    assert outcomes_recompute_patients([clinical.patient.pk]) == 0
    # M3 was in fact seen before M1, with a severe flare (SLEDAI-2K above 12): the order of the visits changes.
    visit_record(
        visit=visits["M3"],
        actual_date=DAY_ZERO + dt.timedelta(days=17),
        results={"SLEDAI2K": 14, "PRED": 5},
        deviation_reason="seen early",
        reason="date corrected",
    )
    assert (outcome("M3").flare, outcome("M1").flare, outcome("M1").sledai_change) == ("severe", "none", -6)
    assert outcomes_recompute_patients([clinical.patient.pk]) == 0


@settings(max_examples=200, deadline=None)
@given(course=courses, changed=values, prednisone=st.integers(0, 40).map(Decimal), data=st.data())
def test_changing_a_visit_changes_no_more_of_another_visit_s_outcome_than_its_flare_and_relapse(
    course, changed, prednisone, data
):
    points = points_of(course)
    at = data.draw(st.integers(1, len(points) - 1), label="changed visit")  # not the baseline
    before = {out.visit_id: out for out in o.compute_outcomes(points)}
    points[at] = dataclasses.replace(points[at], values=changed, prednisone_mg=prednisone)
    after = {out.visit_id: out for out in o.compute_outcomes(points)}
    unchained = dict.fromkeys(o.CHAIN_FIELDS)
    for visit_id in set(after) - {points[at].visit_id}:
        assert dataclasses.replace(after[visit_id], **unchained) == dataclasses.replace(before[visit_id], **unchained)


@settings(max_examples=200, deadline=None)
@given(course=courses, data=st.data())
def test_chain_visits_get_the_flare_and_relapse_of_the_full_computation_from_their_earlier_values(course, data):
    points = points_of(course)
    since = points[data.draw(st.integers(1, len(points) - 1), label="since visit")].date
    later = [p.visit_id for p in points if p.date >= since]
    chain = set(data.draw(st.lists(st.sampled_from(later), unique=True), label="chain visits"))
    trimmed = [
        dataclasses.replace(point, values={k: v for k, v in point.values.items() if k in o.EARLIER_VISIT_CODES})
        if point.visit_id in chain or (point.day > 0 and point.date < since)
        else point
        for point in points
    ]
    full = o.compute_outcomes(points, since=since)
    got = o.compute_outcomes(trimmed, since=since, chain=chain)
    assert [out.visit_id for out in got] == [out.visit_id for out in full]
    for mine, whole in zip(got, full, strict=True):
        if mine.visit_id in chain:
            assert mine == o.VisitOutcomeData(visit_id=whole.visit_id, flare=whole.flare, relapse=whole.relapse)
        else:
            assert mine == whole


def _late_recording_setup():
    """BL, D7 in remission and M3 with a flare after it (a relapse) recorded; M1, between them, still open."""
    clinical = make_clinical()
    visits = {v.code: v for v in Visit.objects.filter(patient=clinical.patient)}
    day = {code: DAY_ZERO + dt.timedelta(days=n) for code, n in (("BL", 0), ("D7", 7), ("M1", 30), ("M3", 91))}
    for code, sledai in (("BL", 12), ("D7", 2), ("M3", 6)):
        visit_record(visit=visits[code], actual_date=day[code], results={"SLEDAI2K": sledai, "PRED": 5, "PGA": 1})
    m3 = ComputedOutcome.objects.get(visit=visits["M3"])
    assert (m3.flare, m3.relapse) == (o.FLARE_MILD_MODERATE, True)
    return clinical, visits, day


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["one", "batch"])
def test_a_visit_recorded_late_rewrites_only_the_flare_and_relapse_of_the_visits_after_it(path):
    from followup.services import VisitEntry, visits_record_batch

    clinical, visits, day = _late_recording_setup()
    before = ComputedOutcome.objects.get(visit=visits["M3"])
    entry = VisitEntry(day["M1"], {"SLEDAI2K": 10, "PRED": 5, "PGA": 1})
    if path == "one":
        visit_record(visit=visits["M1"], **vars(entry))
    else:
        visits_record_batch(
            site=clinical.site,
            study_code=clinical.study.code,
            entries=[(clinical.patient.subject_code, "M1", entry)],
        )
    m1, m3 = (ComputedOutcome.objects.get(visit=visits[code]) for code in ("M1", "M3"))
    assert (m1.flare, m1.relapse) == (o.FLARE_MILD_MODERATE, True)  # 2 -> 10 after the remission at D7
    assert (m3.flare, m3.relapse) == (o.FLARE_NONE, False)  # 10 -> 6: no flare any more
    assert m3.computed_at > before.computed_at
    assert (m3.changes, m3.sledai_change, m3.remission) == (before.changes, before.sledai_change, before.remission)
    assert outcomes_recompute_patients([clinical.patient.pk]) == 0


@pytest.mark.django_db
@pytest.mark.parametrize("stale", ["missing", "other definitions"])
def test_a_later_visit_whose_stored_outcome_cannot_be_trusted_is_recomputed_whole(stale):
    from registry.models import OutcomeSettings

    clinical, visits, day = _late_recording_setup()
    if stale == "missing":
        ComputedOutcome.objects.filter(visit=visits["M3"]).delete()
    else:  # a flare now needs a rise of 5: M3's stored outcome was computed under a rise of 3
        OutcomeSettings.objects.filter(study=clinical.study).update(flare_rise_min=5)
    visit_record(visit=visits["M1"], actual_date=day["M1"], results={"SLEDAI2K": 3, "PRED": 5, "PGA": 1})
    m3 = ComputedOutcome.objects.get(visit=visits["M3"])
    assert m3.flare == (o.FLARE_NONE if stale == "other definitions" else o.FLARE_MILD_MODERATE)  # 3 -> 6
    assert m3.changes["SLEDAI2K"]["absolute"] == "-6"
    if stale == "missing":
        assert outcomes_recompute_patients([clinical.patient.pk]) == 0
    else:  # M3 now under the definitions in force; D7, before M1, keeps those it was computed under
        assert m3.definitions["flare_rise_min"] == "5.00"
        assert ComputedOutcome.objects.get(visit=visits["D7"]).definitions["flare_rise_min"] == "3.00"
        assert outcomes_recompute_patients([clinical.patient.pk]) == 1  # D7 only
