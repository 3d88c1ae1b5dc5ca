"""SLEDAI-2K (docs/clinical-rules.md, "SLEDAI-2K"): the total from the items; how `visit_record` keeps them together."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from followup.catalogue import SLEDAI_ITEMS, SLEDAI_MAX
from followup.computations import sledai_total
from followup.constants import VisitOutcome
from followup.models import Result
from followup.services import visit_record
from tests.factories import DAY_ZERO, make_clinical

WEIGHTS = {code: item.weight for code, item in SLEDAI_ITEMS.items()}


# The items and their weights ---------------------------------------------------------------------------


def test_items_carry_the_domain_weights():
    by_weight: dict[int, set[str]] = {}
    for code, weight in WEIGHTS.items():
        by_weight.setdefault(weight, set()).add(code)
    assert by_weight == {
        8: {
            "seizure",
            "psychosis",
            "organic_brain_syndrome",
            "visual_disturbance",
            "cranial_nerve_disorder",
            "lupus_headache",
            "cva",
            "vasculitis",
        },
        4: {"arthritis", "myositis", "urinary_casts", "haematuria", "proteinuria", "pyuria"},
        2: {
            "rash",
            "alopecia",
            "mucosal_ulcers",
            "pleurisy",
            "pericarditis",
            "low_complement",
            "increased_dna_binding",
        },
        1: {"fever", "thrombocytopenia", "leukopenia"},
    }


def test_all_items_sum_to_105():
    # 8 x 8 + 6 x 4 + 7 x 2 + 3 x 1 = 64 + 24 + 14 + 3 = 105
    assert SLEDAI_MAX == 8 * 8 + 6 * 4 + 7 * 2 + 3 * 1 == 105
    assert sledai_total(SLEDAI_ITEMS) == 105


def test_no_item_present_gives_zero():
    assert sledai_total([]) == 0


def test_total_is_the_sum_of_the_weights_of_the_items_present():
    # arthritis 4 + proteinuria 4 + rash 2 + low complement 2 + increased DNA binding 2 = 14
    items = ["arthritis", "proteinuria", "rash", "low_complement", "increased_dna_binding"]
    assert sledai_total(items) == 4 + 4 + 2 + 2 + 2 == 14


def test_one_item_of_each_weight():
    # seizure 8 + pyuria 4 + alopecia 2 + fever 1 = 15
    assert sledai_total(["seizure", "pyuria", "alopecia", "fever"]) == 8 + 4 + 2 + 1 == 15


def test_an_item_named_twice_counts_once():
    assert sledai_total(["vasculitis", "vasculitis", "fever"]) == 8 + 1


def test_unknown_item_is_refused_naming_it():
    with pytest.raises(ValidationError) as excinfo:
        sledai_total(["rash", "headache"])
    messages = " ".join(excinfo.value.message_dict["sledai_items"])
    assert "headache" in messages


# Properties ---------------------------------------------------------------------------------------------

item_sets = st.sets(st.sampled_from(sorted(SLEDAI_ITEMS)))


@settings(database=None, max_examples=300)
@given(item_sets)
def test_total_of_any_subset_is_the_sum_of_its_weights_between_0_and_105(items):
    total = sledai_total(items)
    assert total == sum(WEIGHTS[code] for code in items)
    assert 0 <= total <= 105


@settings(database=None, max_examples=300)
@given(item_sets, st.sampled_from(sorted(SLEDAI_ITEMS)))
def test_adding_an_item_never_lowers_the_total(items, extra):
    before = sledai_total(items)
    after = sledai_total(items | {extra})
    assert after >= before
    assert after - before == (0 if extra in items else WEIGHTS[extra])


@settings(database=None, max_examples=100)
@given(st.lists(st.sampled_from(sorted(SLEDAI_ITEMS))))
def test_order_and_repetition_of_items_do_not_change_the_total(items):
    assert sledai_total(items) == sledai_total(sorted(set(items), reverse=True))


# Through visit_record -----------------------------------------------------------------------------------

pytestmark = pytest.mark.django_db

ITEMS_14 = ["arthritis", "proteinuria", "rash", "low_complement", "increased_dna_binding"]


@pytest.fixture
def clinical():
    return make_clinical()


def sledai_row(visit):
    return Result.objects.get(visit=visit, code="SLEDAI2K")


def test_items_recorded_at_a_visit_give_its_total(clinical):
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, sledai_items=ITEMS_14)
    visit.refresh_from_db()
    row = sledai_row(visit)
    assert row.value == Decimal(14)
    assert row.derived is True
    assert visit.sledai_items == sorted(ITEMS_14)
    assert visit.outcome == VisitOutcome.COMPLETED


def test_items_are_stored_once_and_sorted(clinical):
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, sledai_items=["rash", "arthritis", "rash"])
    visit.refresh_from_db()
    assert visit.sledai_items == ["arthritis", "rash"]
    assert sledai_row(visit).value == Decimal(4 + 2)


def test_assessed_with_no_item_present_gives_a_total_of_zero(clinical):
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, sledai_items=[])
    visit.refresh_from_db()
    assert visit.sledai_items == []
    assert sledai_row(visit).value == 0


def test_total_that_agrees_with_the_items_is_accepted(clinical):
    visit = visit_record(
        visit=clinical.visit("BL"), actual_date=DAY_ZERO, sledai_items=ITEMS_14, results={"SLEDAI2K": 14}
    )
    assert sledai_row(visit).value == Decimal(14)


def test_total_that_disagrees_with_items_is_refused(clinical):
    visit = clinical.visit("BL")
    with pytest.raises(ValidationError) as excinfo:
        visit_record(
            visit=visit,
            actual_date=DAY_ZERO,
            sledai_items=ITEMS_14,
            results={"SLEDAI2K": 12, "CREAT": ("0.9", "mg/dL")},
        )
    message = " ".join(excinfo.value.message_dict["SLEDAI2K"])
    assert "12" in message  # the submitted total
    assert "14" in message  # the sum of the items
    # Nothing was written: no result (not even the good creatinine), and the visit is still open.
    assert not Result.objects.filter(visit=visit).exists()
    visit.refresh_from_db()
    assert visit.outcome == VisitOutcome.OPEN
    assert visit.actual_date is None
    assert visit.sledai_items is None


def test_total_without_items_is_kept_as_total_only(clinical):
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"SLEDAI2K": 10})
    visit.refresh_from_db()
    row = sledai_row(visit)
    assert row.value == Decimal(10)
    assert row.derived is False
    assert row.entered_value == Decimal(10)
    assert row.entered_unit == "points"
    assert visit.sledai_items is None


def test_unknown_item_is_refused_and_nothing_is_written(clinical):
    visit = clinical.visit("BL")
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=visit, actual_date=DAY_ZERO, sledai_items=["rash", "butterfly_rash"])
    assert "butterfly_rash" in " ".join(excinfo.value.message_dict["sledai_items"])
    assert not Result.objects.filter(visit=visit).exists()
    visit.refresh_from_db()
    assert visit.outcome == VisitOutcome.OPEN


def test_total_above_105_without_items_is_refused(clinical):
    visit = clinical.visit("BL")
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=visit, actual_date=DAY_ZERO, results={"SLEDAI2K": 106})
    assert "0–105" in " ".join(excinfo.value.message_dict["SLEDAI2K"])
    assert not Result.objects.filter(visit=visit).exists()


def test_correcting_the_items_recomputes_the_total_and_keeps_the_old_one_in_history(clinical):
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, sledai_items=ITEMS_14)
    visit_record(
        visit=visit,
        actual_date=DAY_ZERO,
        sledai_items=[*ITEMS_14, "vasculitis"],
        reason="vasculitis missed at data entry",
    )
    visit.refresh_from_db()
    assert sledai_row(visit).value == Decimal(14 + 8)
    assert "vasculitis" in visit.sledai_items
    history = list(sledai_row(visit).history.order_by("history_date").values_list("value", "history_change_reason"))
    assert [value for value, _ in history] == [Decimal(14), Decimal(22)]
    assert history[-1][1] == "vasculitis missed at data entry"


def test_total_only_replacing_items_clears_the_items(clinical):
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, sledai_items=ITEMS_14)
    visit_record(
        visit=visit,
        actual_date=DAY_ZERO,
        results={"SLEDAI2K": 10},
        reason="item sheet lost; total from the clinic letter",
    )
    visit.refresh_from_db()
    assert visit.sledai_items is None
    assert sledai_row(visit).value == Decimal(10)
    assert sledai_row(visit).derived is False


def test_results_without_sledai_leave_recorded_items_alone(clinical):
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, sledai_items=ITEMS_14)
    visit_record(visit=visit, actual_date=DAY_ZERO, results={"C3": "0.6"}, reason="late C3 result")
    visit.refresh_from_db()
    assert visit.sledai_items == sorted(ITEMS_14)
    assert sledai_row(visit).value == Decimal(14)


def test_visit_date_is_needed(clinical):
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=clinical.visit("BL"), actual_date=None, sledai_items=ITEMS_14)
    assert "actual_date" in excinfo.value.message_dict


def test_removing_the_total_removes_the_items_it_was_computed_from(clinical):
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, sledai_items=ITEMS_14)
    visit_record(visit=visit, actual_date=DAY_ZERO, remove=["SLEDAI2K"], reason="SLEDAI-2K was not assessed")
    visit.refresh_from_db()
    assert not Result.objects.filter(visit=visit, code="SLEDAI2K").exists()
    assert visit.sledai_items is None, "items left behind without their total disagree with it"
