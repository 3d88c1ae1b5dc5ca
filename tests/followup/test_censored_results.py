"""Censored results (docs/clinical-rules.md, "Censored results"): a laboratory value reported below its limit
of detection ("<10") or above its range (">2000") is stored with its comparator, as entered and as the
canonical limit, and the computations that read it follow the documented rules."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from followup import outcomes
from followup.computations import censored_text
from followup.models import ComputedOutcome, Result
from followup.services import visit_record
from tests.factories import DAY_ZERO, make_clinical

pytestmark = pytest.mark.django_db

D = Decimal
M3 = DAY_ZERO + dt.timedelta(days=91)


def results_of(visit) -> dict[str, Result]:
    return {r.code: r for r in Result.objects.filter(visit=visit)}


def test_a_censored_value_is_stored_with_its_comparator_as_entered_and_as_the_canonical_limit():
    clinical = make_clinical()
    visit = visit_record(
        visit=clinical.visit("BL"),
        actual_date=DAY_ZERO,
        results={
            "ADSDNA": {"value": "10", "comparator": "<"},
            "C3": {"value": "5", "unit": "mg/dL", "comparator": "<"},
        },
    )
    rows = results_of(visit)
    assert (rows["ADSDNA"].comparator, rows["ADSDNA"].value, rows["ADSDNA"].entered_value) == ("<", D("10"), D("10"))
    # The comparator travels with the converted value: <5 mg/dL is <0.05 g/L.
    assert (rows["C3"].comparator, rows["C3"].value, rows["C3"].entered_unit) == ("<", D("0.05"), "mg/dL")
    assert (rows["C3"].shown_value, rows["C3"].shown_entered_value) == ("<0.05", "<5")
    assert str(rows["ADSDNA"]) == "ADSDNA <10"


def test_a_value_without_a_comparator_is_exact_as_before():
    clinical = make_clinical()
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"ADSDNA": ("10", None)})
    assert results_of(visit)["ADSDNA"].comparator == ""
    assert results_of(visit)["ADSDNA"].shown_value == "10"


def test_a_correction_can_turn_a_censored_value_exact_and_back():
    clinical = make_clinical()
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"ADSDNA": ("10", None, "<")})
    visit_record(visit=visit, actual_date=DAY_ZERO, results={"ADSDNA": ("12", None)}, reason="re-assayed")
    assert results_of(visit)["ADSDNA"].shown_value == "12"
    visit_record(visit=visit, actual_date=DAY_ZERO, results={"ADSDNA": ("12", None, ">=")}, reason="lab report")
    assert results_of(visit)["ADSDNA"].shown_value == ">=12"
    assert [h.comparator for h in Result.history.filter(code="ADSDNA").order_by("history_id")] == ["<", "", ">="]


@pytest.mark.parametrize(
    ("results", "fragments"),
    [
        ({"ADSDNA": ("10", None, "<<")}, ["ADSDNA", "<<", "<, <=, >=, >"]),
        ({"ADSDNA": ("10", None, "~")}, ["ADSDNA", "~"]),
        ({"SLEDAI2K": ("4", None, "<")}, ["SLEDAI2K", "laboratory results only"]),
        ({"PRED": ("5", None, "<")}, ["PRED", "laboratory results only"]),
        ({"EGFR": ("90", None, ">")}, ["EGFR", "laboratory results only"]),
        # The limit itself must be plausible, and nothing is below 0.
        ({"ADSDNA": ("0", None, "<")}, ["ADSDNA", "<0", "below 0"]),
        ({"CREAT": ("5000", None, "<")}, ["CREAT", "5000", "plausible range"]),
        ({"CREAT": ("5", None, "<")}, ["CREAT", "5", "10–2000"]),
    ],
)
def test_a_comparator_that_cannot_hold_is_refused_naming_the_field_and_the_rule(results, fragments):
    clinical = make_clinical()
    visit = clinical.visit("BL")
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=visit, actual_date=DAY_ZERO, results=results)
    code = next(iter(results))
    message = " ".join(excinfo.value.message_dict[code])
    for fragment in fragments:
        assert fragment in message, message
    assert not Result.objects.filter(visit=visit).exists()


# eGFR --------------------------------------------------------------------------------------------------


def test_egfr_is_not_computed_from_a_censored_creatinine():
    clinical = make_clinical()
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"CREAT": ("20", None, "<")})
    rows = results_of(visit)
    assert rows["CREAT"].shown_value == "<20"
    assert "EGFR" not in rows


def test_a_creatinine_corrected_to_censored_takes_its_computed_egfr_away():
    clinical = make_clinical()
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"CREAT": ("0.9", "mg/dL")})
    assert results_of(visit)["EGFR"].derived
    visit_record(visit=visit, actual_date=DAY_ZERO, results={"CREAT": ("20", None, "<")}, reason="lab report")
    assert "EGFR" not in results_of(visit)
    # Exact again: computed again.
    visit_record(visit=visit, actual_date=DAY_ZERO, results={"CREAT": ("0.9", "mg/dL")}, reason="re-assayed")
    assert results_of(visit)["EGFR"].value == D("85.5")


def test_an_egfr_reported_by_the_laboratory_beside_a_censored_creatinine_is_kept_as_entered():
    clinical = make_clinical()
    visit = visit_record(
        visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"CREAT": ("20", None, "<"), "EGFR": "120"}
    )
    assert (results_of(visit)["EGFR"].value, results_of(visit)["EGFR"].derived) == (D("120"), False)


# SLEDAI-2K items ---------------------------------------------------------------------------------------


def test_anti_dsdna_below_the_limit_is_not_increased_dna_binding():
    clinical = make_clinical()
    visit = clinical.visit("BL")
    with pytest.raises(ValidationError) as excinfo:
        visit_record(
            visit=visit,
            actual_date=DAY_ZERO,
            results={"ADSDNA": ("10", None, "<")},
            sledai_items=["rash", "increased_dna_binding"],
        )
    message = " ".join(excinfo.value.message_dict["sledai_items"])
    assert "Increased DNA binding" in message and "<10" in message
    assert not Result.objects.filter(visit=visit).exists()
    # Without the item, the visit is recorded and the total does not count it.
    visit_record(visit=visit, actual_date=DAY_ZERO, results={"ADSDNA": ("10", None, "<")}, sledai_items=["rash"])
    assert results_of(visit)["SLEDAI2K"].value == D("2")


def test_a_stored_anti_dsdna_below_the_limit_also_refuses_the_item_added_later():
    clinical = make_clinical()
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"ADSDNA": ("10", None, "<")})
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=visit, actual_date=DAY_ZERO, sledai_items=["increased_dna_binding"], reason="assessed")
    assert "sledai_items" in excinfo.value.message_dict


def test_anti_dsdna_above_a_limit_may_go_with_increased_dna_binding():
    clinical = make_clinical()
    visit = visit_record(
        visit=clinical.visit("BL"),
        actual_date=DAY_ZERO,
        results={"ADSDNA": ("800", None, ">")},
        sledai_items=["increased_dna_binding"],
    )
    assert results_of(visit)["SLEDAI2K"].value == D("2")


def test_complement_below_the_limit_may_go_with_low_complement():
    clinical = make_clinical()
    visit = visit_record(
        visit=clinical.visit("BL"),
        actual_date=DAY_ZERO,
        results={"C3": ("0.05", None, "<"), "C4": ("0.02", None, "<")},
        sledai_items=["low_complement"],
    )
    assert results_of(visit)["SLEDAI2K"].value == D("2")


# Outcomes ----------------------------------------------------------------------------------------------


def test_change_from_baseline_of_a_censored_value_has_the_sign_and_no_arithmetic():
    clinical = make_clinical()
    visit_record(
        visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"ADSDNA": ("60", None), "C3": ("0.6", None)}
    )
    visit_record(visit=clinical.visit("M3"), actual_date=M3, results={"ADSDNA": ("10", None, "<"), "C3": ("0.9", None)})
    changes = ComputedOutcome.objects.get(visit=clinical.visit("M3")).changes
    assert changes["ADSDNA"] == {"baseline": "60", "value": "10", "comparator": "<", "absolute": None, "percent": None}
    assert changes["C3"]["absolute"] == "0.3"


def point(day: int, values: dict, censored: dict | None = None, **extra) -> outcomes.VisitPoint:
    return outcomes.VisitPoint(
        visit_id=day + 1000,
        date=DAY_ZERO + dt.timedelta(days=day),
        day=day,
        is_baseline_visit=day == 0,
        values={code: D(v) for code, v in values.items()},
        censored=censored or {},
        **extra,
    )


def renal(baseline: dict, visit: dict, base_censored=None, visit_censored=None) -> str | None:
    result = outcomes.compute_outcomes([point(0, baseline, base_censored), point(91, visit, visit_censored)])
    return result[0].renal_response


def test_proteinuria_below_a_limit_under_the_threshold_counts_as_below_it():
    # Baseline 2.5 g/24h; at M3 "<0.1": below 0.5 for sure, eGFR kept: complete.
    base, now = {"PROT24H": "2.5", "EGFR": "90"}, {"PROT24H": "0.1", "EGFR": "88"}
    assert renal(base, now, visit_censored={"PROT24H": "<"}) == outcomes.RENAL_COMPLETE
    # Without eGFR: "<0.1" is also a fall of at least 50% to below 3: partial.
    assert renal({"PROT24H": "2.5"}, {"PROT24H": "0.1"}, visit_censored={"PROT24H": "<"}) == outcomes.RENAL_PARTIAL


def test_proteinuria_below_a_limit_over_the_threshold_is_not_assessable():
    # "<1" could be 0.2 (a complete response) or 0.9 (partial at best): the registry does not guess.
    out = outcomes.compute_outcomes(
        [point(0, {"PROT24H": "2.5", "EGFR": "90"}), point(91, {"PROT24H": "1", "EGFR": "88"}, {"PROT24H": "<"})]
    )[0]
    assert out.renal_response is None
    assert any("censored" in note for note in out.notes)


def test_proteinuria_above_a_limit_is_no_response():
    assert renal({"PROT24H": "2.5"}, {"PROT24H": "3"}, visit_censored={"PROT24H": ">"}) == outcomes.RENAL_NONE


def test_baseline_proteinuria_below_a_limit_under_the_involvement_threshold_is_not_applicable():
    assert (
        renal({"PROT24H": "0.2"}, {"PROT24H": "0.1"}, base_censored={"PROT24H": "<"}) == outcomes.RENAL_NOT_APPLICABLE
    )


def test_censored_text_writes_the_sign_before_the_value():
    assert censored_text(D("10.0000"), "<") == "<10"
    assert censored_text(D("0.0500"), "") == "0.05"


def test_a_safety_check_reads_a_censored_value_at_its_limit_and_shows_the_sign():
    from followup import safety

    clinical = make_clinical()
    visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"PLT": ("210", None)})
    low = visit_record(visit=clinical.visit("M3"), actual_date=M3, results={"PLT": ("50", None, "<")})
    findings = safety.lab_findings([low.pk])
    assert [(f.kind, f.detail) for f in findings] == [("thrombocytopenia", "Platelets <50 x 10^9/L at M3")]
