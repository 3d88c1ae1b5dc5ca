"""Release evaluation of cell product lots (ISCT minimal criteria plus lot tests)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from registry import constants as c
from registry.models import CellProduct
from registry.services import lot_evaluate_release, lot_save
from tests.factories import PASSING_RELEASE_TESTS, CellProductFactory

pytestmark = pytest.mark.django_db

# One failing value per criterion, with the wording of the rule that must appear in the failure.
FAILING_VALUES = [
    ("plastic_adherent", False, "plastic adherence must be shown"),
    ("cd105_pct", Decimal("94.9"), "CD105 must be >= 95%"),
    ("cd73_pct", Decimal("90"), "CD73 must be >= 95%"),
    ("cd90_pct", Decimal("93.5"), "CD90 must be >= 95%"),
    ("cd45_pct", Decimal("2.1"), "CD45 must be <= 2%"),
    ("cd34_pct", Decimal("3"), "CD34 must be <= 2%"),
    ("cd14_or_cd11b_pct", Decimal("5"), "CD14 or CD11b must be <= 2%"),
    ("cd79a_or_cd19_pct", Decimal("2.5"), "CD79a or CD19 must be <= 2%"),
    ("hla_dr_pct", Decimal("12"), "HLA-DR must be <= 2%"),
    ("trilineage_shown", False, "trilineage differentiation must be shown"),
    ("viability_pct", Decimal("79.9"), "viability must be >= 80%"),
    ("sterility", c.TestOutcome.POSITIVE, "sterility must be negative"),
    ("mycoplasma", c.TestOutcome.POSITIVE, "mycoplasma must be negative"),
    ("endotoxin_eu_per_ml", Decimal("0.5"), "endotoxin must be < 0.5 EU/mL"),
    ("karyotype", c.Karyotype.ABNORMAL, "karyotype must be normal"),
]


def test_every_criterion_is_covered_by_these_tests():
    assert {field for field, _, _ in FAILING_VALUES} == {field for field, *_ in c.RELEASE_CRITERIA}
    assert set(PASSING_RELEASE_TESTS) == {field for field, *_ in c.RELEASE_CRITERIA}


def test_lot_passing_every_test_is_released():
    lot = CellProductFactory()

    lot.refresh_from_db()
    assert lot.release_status == c.ReleaseStatus.RELEASED
    assert lot.release_failures == []


def test_thresholds_themselves_pass():
    lot = CellProductFactory(
        release_tests={
            "cd105_pct": Decimal("95"),
            "cd73_pct": Decimal("95"),
            "cd90_pct": Decimal("95"),
            "cd45_pct": Decimal("2"),
            "cd34_pct": Decimal("2"),
            "cd14_or_cd11b_pct": Decimal("2"),
            "cd79a_or_cd19_pct": Decimal("2"),
            "hla_dr_pct": Decimal("2"),
            "viability_pct": Decimal("80"),
            "endotoxin_eu_per_ml": Decimal("0.499"),
        }
    )

    assert lot.release_status == c.ReleaseStatus.RELEASED


@pytest.mark.parametrize(("field", "value", "rule"), FAILING_VALUES, ids=[f for f, _, _ in FAILING_VALUES])
def test_failing_criterion_fails_the_lot_and_is_named(field, value, rule):
    lot = CellProductFactory(release_tests={field: value})

    lot.refresh_from_db()
    assert lot.release_status == c.ReleaseStatus.FAILED
    assert len(lot.release_failures) == 1
    failure = lot.release_failures[0]
    assert failure.startswith(f"{field}: ")
    assert rule in failure


@pytest.mark.parametrize("field", [f for f, _, _ in FAILING_VALUES])
def test_missing_test_keeps_the_lot_pending_as_not_tested(field):
    missing = "" if field in {"sterility", "mycoplasma", "karyotype"} else None
    lot = CellProductFactory(release_tests={field: missing})

    lot.refresh_from_db()
    assert lot.release_status == c.ReleaseStatus.PENDING
    assert len(lot.release_failures) == 1
    assert lot.release_failures[0].startswith(f"{field}: not tested")


def test_failure_wins_over_missing_tests_and_both_are_listed():
    lot = CellProduct(**{**PASSING_RELEASE_TESTS, "cd34_pct": Decimal("4"), "karyotype": ""})

    status, failures = lot_evaluate_release(lot)

    assert status == c.ReleaseStatus.FAILED
    assert any(f.startswith("cd34_pct: 4") and "CD34 must be <= 2%" in f for f in failures)
    assert any(f.startswith("karyotype: not tested") for f in failures)


def test_release_is_recomputed_when_a_lot_is_saved_again():
    lot = CellProductFactory(release_tests={"mycoplasma": ""})
    assert lot.release_status == c.ReleaseStatus.PENDING

    lot.mycoplasma = c.TestOutcome.NEGATIVE
    lot_save(lot=lot, reason="mycoplasma result received")

    lot.refresh_from_db()
    assert lot.release_status == c.ReleaseStatus.RELEASED
    assert lot.release_failures == []
