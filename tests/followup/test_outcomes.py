"""The outcomes engine (docs/clinical-rules.md, "Outcomes"): pure functions over hand-made visit lists, then
end to end through `visit_record` and `outcomes_recompute` with the study's stored definitions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from followup import outcomes as o
from followup.models import ComputedOutcome
from followup.services import outcome_definitions_for, outcomes_recompute, visit_record, visit_record_unscheduled
from patients.services import medication_record
from registry.models import OutcomeSettings
from tests.factories import DAY_ZERO, make_clinical

pytestmark = pytest.mark.django_db

D = Decimal
DEFAULTS = o.OutcomeDefinitions()


def point(visit_id: int, day: int, *, bl: bool = False, pred=None, weight=None, **values) -> o.VisitPoint:
    return o.VisitPoint(
        visit_id=visit_id,
        date=DAY_ZERO + dt.timedelta(days=day),
        day=day,
        is_baseline_visit=bl,
        values={code: D(str(value)) for code, value in values.items()},
        prednisone_mg=None if pred is None else D(str(pred)),
        weight_kg=None if weight is None else D(str(weight)),
    )


def by_visit(points, d=DEFAULTS) -> dict[int, o.VisitOutcomeData]:
    return {out.visit_id: out for out in o.compute_outcomes(points, d)}


# Change from baseline ---------------------------------------------------------------------------------


def test_change_from_baseline_absolute_and_percent():
    out = by_visit([point(1, 0, bl=True, SLEDAI2K=12, PROT24H="2.505"), point(2, 365, SLEDAI2K=4, PROT24H="0.858")])[2]
    # SLEDAI: 4 - 12 = -8; -8 / 12 x 100 = -66.666... -> -66.67 %
    assert out.changes["SLEDAI2K"] == {"baseline": "12", "value": "4", "absolute": "-8", "percent": "-66.67"}
    # Proteinuria (Liang 2010 means): 0.858 - 2.505 = -1.647; -1.647 / 2.505 x 100 = -65.748... -> -65.75 %
    assert out.changes["PROT24H"] == {
        "baseline": "2.505",
        "value": "0.858",
        "absolute": "-1.647",
        "percent": "-65.75",
    }
    assert out.sledai == D(4)
    assert out.sledai_change == D(-8)


def test_rise_from_baseline_is_a_positive_change():
    out = by_visit([point(1, 0, bl=True, C3="0.5"), point(2, 30, C3="0.8")])[2]
    # 0.8 - 0.5 = 0.3; 0.3 / 0.5 x 100 = 60 %
    assert out.changes["C3"] == {"baseline": "0.5", "value": "0.8", "absolute": "0.3", "percent": "60.00"}


def test_baseline_of_zero_gives_no_percent_change():
    out = by_visit([point(1, 0, bl=True, SLEDAI2K=0, ADSDNA=0), point(2, 30, SLEDAI2K=3, ADSDNA=0)])[2]
    assert out.changes["SLEDAI2K"]["absolute"] == "3"
    assert out.changes["SLEDAI2K"]["percent"] is None
    assert out.changes["ADSDNA"] == {"baseline": "0", "value": "0", "absolute": "0", "percent": None}


def test_code_without_a_baseline_value_has_no_change_entry():
    out = by_visit([point(1, 0, bl=True, SLEDAI2K=12), point(2, 30, SLEDAI2K=6, C3="0.9")])[2]
    assert set(out.changes) == {"SLEDAI2K"}


def test_baseline_comes_from_the_bl_visit_even_if_a_later_pre_transplant_value_exists():
    points = [
        point(1, -10, bl=True, SLEDAI2K=12),  # BL visit, 10 days before day 0
        point(2, -3, SLEDAI2K=16, C3="0.4"),  # unscheduled, after BL but before day 0
        point(3, 30, SLEDAI2K=6, C3="0.6"),
    ]
    out = by_visit(points)[3]
    assert out.changes["SLEDAI2K"]["baseline"] == "12"
    assert out.sledai_change == D(6 - 12)
    # C3 was not measured at BL: its baseline is the last value before day 0.
    assert out.changes["C3"]["baseline"] == "0.4"


def test_without_a_bl_value_the_baseline_is_the_last_value_before_day_zero():
    points = [
        point(1, -20, SLEDAI2K=10),  # unscheduled pre-transplant visits, no BL visit at all
        point(2, -5, SLEDAI2K=14),
        point(3, 30, SLEDAI2K=6),
    ]
    assert o.baseline_values(points) == {"SLEDAI2K": D(14)}
    out = by_visit(points)[3]
    assert out.changes["SLEDAI2K"] == {"baseline": "14", "value": "6", "absolute": "-8", "percent": "-57.14"}


def test_value_on_day_zero_counts_as_baseline():
    assert o.baseline_values([point(1, 0, SLEDAI2K=9), point(2, 1, SLEDAI2K=3)]) == {"SLEDAI2K": D(9)}


def test_no_baseline_at_all_gives_no_change_entry():
    out = by_visit([point(1, 30, SLEDAI2K=6, C3="0.6")])[1]
    assert out.changes == {}
    assert out.sledai == D(6)
    assert out.sledai_change is None
    assert out.sri4 is None


def test_only_post_transplant_visits_get_outcomes_in_date_order():
    points = [point(3, 91, SLEDAI2K=4), point(1, -2, bl=True, SLEDAI2K=12), point(2, 30, SLEDAI2K=6)]
    assert [out.visit_id for out in o.compute_outcomes(points)] == [2, 3]


# SRI-4 (simplified) -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("sledai", "met"), [(8, True), (9, False), (0, True)])
def test_sri4_needs_a_reduction_of_at_least_4(sledai, met):
    # 12 - 8 = 4 (met, the threshold itself); 12 - 9 = 3 (not met)
    out = by_visit([point(1, 0, bl=True, SLEDAI2K=12), point(2, 91, SLEDAI2K=sledai)])[2]
    assert out.sri4 is met
    assert "BILAG not assessed" in out.sri4_note
    assert "PGA not recorded" in out.sri4_note


@pytest.mark.parametrize(("pga", "met"), [("1.3", False), ("1.2", True), ("0.5", True), ("1.29", True)])
def test_sri4_needs_a_pga_increase_below_0_3(pga, met):
    # PGA 1.0 -> 1.3 is an increase of 0.3: not below 0.3, not met; 1.0 -> 1.2 (0.2) is met.
    out = by_visit([point(1, 0, bl=True, SLEDAI2K=12, PGA="1.0"), point(2, 91, SLEDAI2K=6, PGA=pga)])[2]
    assert out.sri4 is met
    assert out.sri4_note == "BILAG not assessed"


def test_sri4_fails_on_sledai_whatever_the_pga():
    out = by_visit([point(1, 0, bl=True, SLEDAI2K=12, PGA="2"), point(2, 91, SLEDAI2K=10, PGA="0.5")])[2]
    assert out.sri4 is False


def test_sri4_is_not_assessed_without_sledai_at_the_visit():
    out = by_visit([point(1, 0, bl=True, SLEDAI2K=12), point(2, 91, C3="0.9")])[2]
    assert out.sri4 is None
    assert "SLEDAI-2K missing" in out.sri4_note


# Remission --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sledai", "pred", "expected"),
    [
        (3, 10, o.REMISSION_COMPLETE),  # <= 3 with prednisone <= 10 mg/day (both thresholds exactly)
        (0, 0, o.REMISSION_COMPLETE),
        (3, "10.5", o.REMISSION_PARTIAL),  # prednisone too high: partial (12 - 3 = 9 >= 4, 3 <= 8)
        (4, 5, o.REMISSION_PARTIAL),  # 4 > 3: not complete; 12 - 4 = 8 >= 4 and 4 <= 8: partial
        (8, None, o.REMISSION_PARTIAL),  # 12 - 8 = 4 >= 4 and 8 <= 8: partial at both thresholds
        (9, 5, o.REMISSION_NONE),  # 9 > 8
    ],
)
def test_remission_by_sledai_and_prednisone(sledai, pred, expected):
    out = by_visit([point(1, 0, bl=True, SLEDAI2K=12), point(2, 182, SLEDAI2K=sledai, pred=pred)])[2]
    assert out.remission == expected


def test_complete_remission_needs_prednisone_known():
    out = by_visit([point(1, 0, bl=True, SLEDAI2K=12), point(2, 182, SLEDAI2K=2)])[2]
    assert out.remission == o.REMISSION_PARTIAL  # 12 - 2 = 10 >= 4, so partial is all that can be said
    assert "prednisone not known: complete remission not assessable" in out.notes


def test_complete_remission_needs_no_reduction_from_baseline():
    out = by_visit([point(1, 0, bl=True, SLEDAI2K=4), point(2, 182, SLEDAI2K=2, pred=5)])[2]
    assert out.remission == o.REMISSION_COMPLETE


def test_partial_remission_needs_a_reduction_of_at_least_4():
    # 11 - 8 = 3 < 4: none, although 8 <= 8
    out = by_visit([point(1, 0, bl=True, SLEDAI2K=11), point(2, 182, SLEDAI2K=8, pred=20)])[2]
    assert out.remission == o.REMISSION_NONE


def test_partial_remission_needs_a_baseline():
    out = by_visit([point(2, 182, SLEDAI2K=6, pred=20)])[2]
    assert out.remission == o.REMISSION_NONE


def test_remission_is_not_assessed_without_sledai():
    assert by_visit([point(1, 0, bl=True, SLEDAI2K=12), point(2, 182, C3="1")])[2].remission is None


# Renal response ---------------------------------------------------------------------------------------


def renal(base: dict, visit: dict) -> str | None:
    return by_visit([point(1, 0, bl=True, **base), point(2, 182, **visit)])[2].renal_response


@pytest.mark.parametrize(("base", "applies"), [("0.49", False), ("0.5", True)])
def test_renal_response_applies_from_baseline_proteinuria_of_0_5(base, applies):
    result = renal({"PROT24H": base, "EGFR": 90}, {"PROT24H": "0.1", "EGFR": 90})
    assert (result != o.RENAL_NOT_APPLICABLE) is applies
    if not applies:
        assert result == o.RENAL_NOT_APPLICABLE


@pytest.mark.parametrize(
    ("egfr", "expected"),
    [
        ("76.5", o.RENAL_COMPLETE),  # 90 x (1 - 15/100) = 76.5: a drop of exactly 15 % still counts
        ("76.4", o.RENAL_PARTIAL),  # a drop of more than 15 %: not complete; 2.505 -> 0.4 is -84 %, partial
        ("120", o.RENAL_COMPLETE),
    ],
)
def test_complete_renal_response_needs_egfr_within_15_percent(egfr, expected):
    assert renal({"PROT24H": "2.505", "EGFR": 90}, {"PROT24H": "0.4", "EGFR": egfr}) == expected


def test_complete_renal_response_needs_proteinuria_below_0_5():
    # 0.5 is not below 0.5; 2.505 -> 0.5 is a fall of 80 % to below 3: partial
    assert renal({"PROT24H": "2.505", "EGFR": 90}, {"PROT24H": "0.5", "EGFR": 90}) == o.RENAL_PARTIAL


def test_complete_renal_response_needs_an_egfr_at_both_visits():
    assert renal({"PROT24H": "2.505"}, {"PROT24H": "0.3"}) == o.RENAL_PARTIAL
    assert renal({"PROT24H": "2.505", "EGFR": 90}, {"PROT24H": "0.3"}) == o.RENAL_PARTIAL


@pytest.mark.parametrize(
    ("base", "now", "expected"),
    [
        ("2.0", "1.0", o.RENAL_PARTIAL),  # (2.0 - 1.0) / 2.0 = 50 %: the threshold itself
        ("2.0", "1.01", o.RENAL_NONE),  # 49.5 %
        ("8.0", "3.0", o.RENAL_NONE),  # -62.5 % but not below 3
        ("8.0", "2.99", o.RENAL_PARTIAL),  # -62.6 % and below 3
        ("2.505", "0.858", o.RENAL_PARTIAL),  # Liang 2010 means: -65.7 %
        ("2.0", "2.5", o.RENAL_NONE),  # worse
    ],
)
def test_partial_renal_response_needs_a_fall_of_half_to_below_3(base, now, expected):
    assert renal({"PROT24H": base}, {"PROT24H": now}) == expected


def test_renal_response_uses_upcr_when_there_is_no_24h_proteinuria():
    assert renal({"UPCR": "1.8", "EGFR": 80}, {"UPCR": "0.3", "EGFR": 75}) == o.RENAL_COMPLETE
    assert renal({"UPCR": "0.3"}, {"UPCR": "0.2"}) == o.RENAL_NOT_APPLICABLE


def test_renal_response_is_not_assessed_without_proteinuria_at_the_visit():
    assert renal({"PROT24H": "2.5"}, {"C3": "0.9"}) is None
    assert renal({"C3": "0.9"}, {"PROT24H": "0.3"}) is None


# Flare and relapse ------------------------------------------------------------------------------------


def flare_at_second(previous, now, *, pred=None, weight=None) -> str | None:
    points = [
        point(1, 0, bl=True, SLEDAI2K=20),
        point(2, 30, SLEDAI2K=previous),
        point(3, 91, SLEDAI2K=now, pred=pred, weight=weight),
    ]
    return by_visit(points)[3].flare


@pytest.mark.parametrize(
    ("previous", "now", "expected"),
    [
        (4, 7, o.FLARE_MILD_MODERATE),  # rise 3: the threshold
        (4, 6, o.FLARE_NONE),  # rise 2
        (8, 12, o.FLARE_MILD_MODERATE),  # rise 4 to 12: not above 12
        (9, 13, o.FLARE_SEVERE),  # rise 4 to 13 > 12
        (6, 2, o.FLARE_NONE),  # a fall
    ],
)
def test_flare_by_rise_against_the_previous_visit(previous, now, expected):
    assert flare_at_second(previous, now) == expected


@pytest.mark.parametrize(
    ("pred", "weight", "expected"),
    [
        (30, 60, o.FLARE_MILD_MODERATE),  # 30 / 60 = 0.5 mg/kg/day: not above 0.5
        (31, 60, o.FLARE_SEVERE),  # 31 / 60 = 0.517 mg/kg/day > 0.5
        (31, None, o.FLARE_MILD_MODERATE),  # weight unknown: mg/kg cannot be told
        (None, 60, o.FLARE_MILD_MODERATE),
    ],
)
def test_severe_flare_by_prednisone_per_kg(pred, weight, expected):
    # rise 4 -> 8, below 12: only the prednisone can make it severe
    assert flare_at_second(4, 8, pred=pred, weight=weight) == expected


def test_heavy_prednisone_without_a_rise_is_not_a_flare():
    assert flare_at_second(8, 9, pred=60, weight=50) == o.FLARE_NONE


def test_first_post_transplant_visit_is_compared_with_baseline():
    out = by_visit([point(1, 0, bl=True, SLEDAI2K=4), point(2, 30, SLEDAI2K=8)])[2]
    assert out.flare == o.FLARE_MILD_MODERATE


def test_flare_skips_a_visit_without_sledai():
    points = [
        point(1, 0, bl=True, SLEDAI2K=12),
        point(2, 30, SLEDAI2K=4),
        point(3, 91, C3="0.8"),
        point(4, 182, SLEDAI2K=8),
    ]
    results = by_visit(points)
    assert results[3].flare is None and results[3].relapse is None
    assert results[4].flare == o.FLARE_MILD_MODERATE  # 8 - 4 = 4, against M1


def test_flare_is_not_assessed_without_an_earlier_sledai():
    assert by_visit([point(1, 30, SLEDAI2K=8)])[1].flare is None


def test_relapse_is_a_flare_after_a_remission_counted_once_until_a_new_remission():
    points = [
        point(1, 0, bl=True, SLEDAI2K=16),
        point(2, 30, SLEDAI2K=6),  # 16 - 6 = 10 >= 4, 6 <= 8: partial remission
        point(3, 91, SLEDAI2K=10),  # rise 4: flare after remission -> relapse
        point(4, 182, SLEDAI2K=14),  # rise 4: flare again, the relapse is already counted
        point(5, 274, SLEDAI2K=4, pred=5),  # 16 - 4 = 12, 4 <= 8: partial remission again
        point(6, 365, SLEDAI2K=9),  # rise 5: a new relapse
    ]
    results = by_visit(points)
    assert [results[i].remission for i in range(2, 7)] == ["partial", "none", "none", "partial", "none"]
    assert [results[i].flare for i in range(2, 7)] == ["none", "mild_moderate", "severe", "none", "mild_moderate"]
    assert [results[i].relapse for i in range(2, 7)] == [False, True, False, False, True]


def test_flare_without_an_earlier_remission_is_not_a_relapse():
    results = by_visit([point(1, 0, bl=True, SLEDAI2K=10), point(2, 30, SLEDAI2K=14)])
    assert results[2].flare == o.FLARE_SEVERE
    assert results[2].relapse is False


def test_remission_before_day_zero_does_not_count_for_relapse():
    points = [point(1, -5, SLEDAI2K=2), point(2, 0, bl=True, SLEDAI2K=2, pred=5), point(3, 30, SLEDAI2K=6)]
    assert by_visit(points)[3].relapse is False


# Definitions ------------------------------------------------------------------------------------------


def test_definitions_default_to_the_domain_values():
    assert DEFAULTS.as_dict() == {
        "cr_sledai_max": "3",
        "cr_prednisone_max_mg": "10",
        "pr_sledai_max": "8",
        "pr_reduction_min": "4",
        "sri4_reduction_min": "4",
        "sri4_pga_increase_below": "0.3",
        "renal_involvement_min": "0.5",
        "renal_cr_proteinuria_below": "0.5",
        "renal_cr_egfr_drop_max_pct": "15",
        "renal_pr_reduction_min_pct": "50",
        "renal_pr_proteinuria_below": "3",
        "flare_rise_min": "3",
        "flare_severe_total_above": "12",
        "flare_severe_prednisone_mg_per_kg_above": "0.5",
    }


def test_other_definitions_change_the_result():
    points = [point(1, 0, bl=True, SLEDAI2K=12), point(2, 182, SLEDAI2K=4, pred=5)]
    assert by_visit(points)[2].remission == o.REMISSION_PARTIAL
    looser = o.OutcomeDefinitions(cr_sledai_max=D(4))
    assert by_visit(points, looser)[2].remission == o.REMISSION_COMPLETE


# End to end through the services ----------------------------------------------------------------------

BL_ITEMS = ["arthritis", "proteinuria", "rash", "low_complement"]  # 4 + 4 + 2 + 2 = 12
M1 = dt.date(2025, 4, 2)
M3 = dt.date(2025, 6, 2)


@pytest.fixture
def clinical():
    return make_clinical(weight_kg=D("60.0"))


def computed(clinical, code) -> ComputedOutcome:
    return ComputedOutcome.objects.get(visit=clinical.visit(code))


def record_course(clinical):
    """BL 12, M1 4 with prednisone 5 (partial remission), M3 10 (flare after remission: relapse)."""
    visit_record(
        visit=clinical.visit("BL"),
        actual_date=DAY_ZERO,
        sledai_items=BL_ITEMS,
        results={"PGA": "1.5", "PROT24H": ("2505", "mg/24h"), "CREAT": ("0.9", "mg/dL")},
    )
    visit_record(
        visit=clinical.visit("M1"),
        actual_date=M1,
        sledai_items=["arthritis"],
        results={"PGA": "0.5", "PRED": "5", "PROT24H": ("858", "mg/24h"), "CREAT": ("0.9", "mg/dL")},
    )
    visit_record(
        visit=clinical.visit("M3"),
        actual_date=M3,
        sledai_items=["arthritis", "rash", "low_complement", "increased_dna_binding"],  # 4 + 2 + 2 + 2 = 10
        results={"PRED": "20"},
    )


def test_recorded_visits_get_their_outcomes(clinical):
    record_course(clinical)
    m1, m3 = computed(clinical, "M1"), computed(clinical, "M3")
    assert not ComputedOutcome.objects.filter(visit=clinical.visit("BL")).exists()  # day 0: baseline only

    assert (m1.sledai, m1.sledai_change) == (D(4), D(-8))
    assert m1.sri4 is True  # 12 - 4 = 8 >= 4; PGA fell
    assert m1.remission == "partial"  # 4 > 3, so not complete; 4 <= 8 and -8
    assert m1.renal_response == "partial"  # 2.505 -> 0.858 g/24h: -65.7 %, below 3
    assert m1.flare == "none" and m1.relapse is False
    assert m1.changes["PROT24H"]["percent"] == "-65.75"
    assert m1.changes["EGFR"] == {"baseline": "85.5", "value": "85.5", "absolute": "0", "percent": "0.00"}

    assert (m3.sledai, m3.sledai_change) == (D(10), D(-2))
    assert m3.sri4 is False
    assert m3.remission == "none"
    assert m3.flare == "mild_moderate"  # 10 - 4 = 6 >= 3; 10 <= 12; 20 mg / 60 kg = 0.33 mg/kg
    assert m3.relapse is True
    assert m3.renal_response == ""  # no proteinuria at M3


def test_stored_outcomes_carry_the_algorithm_version_and_the_study_definitions(clinical):
    record_course(clinical)
    settings_row = OutcomeSettings.objects.get(study=clinical.study)
    rows = ComputedOutcome.objects.filter(visit__patient=clinical.patient)
    assert rows.count() == 2
    for row in rows:
        assert row.algorithm_version == o.ALGORITHM_VERSION
        assert row.definitions == outcome_definitions_for(clinical.study.pk).as_dict()
        assert {name: D(value) for name, value in row.definitions.items()} == {
            name: getattr(settings_row, name) for name in DEFAULTS.as_dict()
        }


def test_correcting_an_earlier_visit_changes_later_outcomes(clinical):
    record_course(clinical)
    assert computed(clinical, "M3").relapse is True
    # M1 was really 9 (arthritis 4 + rash 2 + low complement 2 + fever 1): no remission at M1, and M3 (10)
    # is a rise of 1, no flare, no relapse.
    visit_record(
        visit=clinical.visit("M1"),
        actual_date=M1,
        sledai_items=["arthritis", "rash", "low_complement", "fever"],
        reason="items transcribed from the wrong sheet",
    )
    m1, m3 = computed(clinical, "M1"), computed(clinical, "M3")
    assert (m1.sledai, m1.remission, m1.sri4) == (D(9), "none", False)
    assert (m3.flare, m3.relapse) == ("none", False)


def test_correcting_the_baseline_changes_every_later_change_from_baseline(clinical):
    record_course(clinical)
    visit_record(
        visit=clinical.visit("BL"),
        actual_date=DAY_ZERO,
        sledai_items=["arthritis", "rash"],  # 6
        reason="proteinuria and complement items were from an older visit",
    )
    m1, m3 = computed(clinical, "M1"), computed(clinical, "M3")
    assert m1.sledai_change == D(4 - 6)
    assert m1.sri4 is False  # 6 - 4 = 2
    assert m1.remission == "none"  # 4 > 3 and a reduction of only 2
    assert m3.sledai_change == D(10 - 6)
    assert m1.changes["SLEDAI2K"]["baseline"] == "6"


def test_baseline_from_an_unscheduled_pre_transplant_visit_end_to_end(clinical):
    # No BL visit recorded: an unscheduled visit 5 days before day 0 gives the baseline.
    visit_record_unscheduled(
        patient=clinical.patient, actual_date=DAY_ZERO - dt.timedelta(days=5), results={"SLEDAI2K": 14}
    )
    visit_record(visit=clinical.visit("M1"), actual_date=M1, results={"SLEDAI2K": 6})
    m1 = computed(clinical, "M1")
    assert m1.changes["SLEDAI2K"] == {"baseline": "14", "value": "6", "absolute": "-8", "percent": "-57.14"}
    assert m1.sledai_change == D(-8)


def test_no_baseline_end_to_end_gives_no_change(clinical):
    visit_record(visit=clinical.visit("M1"), actual_date=M1, results={"SLEDAI2K": 6, "C3": "0.8"})
    m1 = computed(clinical, "M1")
    assert m1.changes == {}
    assert m1.sledai_change is None
    assert m1.sri4 is None
    assert m1.remission == "none"


def test_prednisone_from_the_medication_list_allows_complete_remission(clinical):
    medication_record(
        patient=clinical.patient,
        drug="prednisone",
        dose=D("5"),
        unit="mg",
        frequency="daily",
        start_date=dt.date(2025, 1, 1),
    )
    visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"SLEDAI2K": 12})
    visit_record(visit=clinical.visit("M1"), actual_date=M1, results={"SLEDAI2K": 2})
    assert computed(clinical, "M1").remission == "complete"


def test_weight_at_infusion_makes_a_heavy_prednisone_flare_severe(clinical):
    # Infusion weight 60 kg; 40 mg/day / 60 kg = 0.67 mg/kg/day > 0.5
    visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"SLEDAI2K": 4})
    visit_record(visit=clinical.visit("M1"), actual_date=M1, results={"SLEDAI2K": 8, "PRED": "40"})
    assert computed(clinical, "M1").flare == "severe"


def test_changing_the_study_definitions_and_recomputing_changes_result_and_stored_definitions(clinical):
    record_course(clinical)
    assert computed(clinical, "M1").remission == "partial"  # SLEDAI 4 > 3
    settings_row = OutcomeSettings.objects.get(study=clinical.study)
    settings_row.cr_sledai_max = D("4")
    settings_row.save()

    outcomes_recompute(patient=clinical.patient)
    m1 = computed(clinical, "M1")
    assert m1.remission == "complete"  # SLEDAI 4 <= 4 with prednisone 5 <= 10
    assert D(m1.definitions["cr_sledai_max"]) == D("4")
    assert D(computed(clinical, "M3").definitions["cr_sledai_max"]) == D("4")


@pytest.mark.parametrize("settings", ["changed", "none"])
def test_a_recording_computes_under_the_study_definitions_read_with_the_visit(clinical, settings):
    """The definitions come with the visit's lookup (its study's settings, joined): a change made before the
    recording is used, and a study without settings gets the defaults."""
    settings_row = OutcomeSettings.objects.get(study=clinical.study)
    if settings == "changed":
        settings_row.cr_sledai_max = D("4")
        settings_row.save()
    else:
        settings_row.delete()
    record_course(clinical)
    m1 = computed(clinical, "M1")
    expected = D("4") if settings == "changed" else DEFAULTS.cr_sledai_max
    assert (D(m1.definitions["cr_sledai_max"]), m1.remission) == (
        expected,
        "complete" if settings == "changed" else "partial",
    )
