"""Workload 9 of `make bench` (docs/performance.md): the cohort import beside a bare `bulk_create` of the same
rows. Not timed here; this holds both sides to writing the same rows, so that the ratio compares like with
like."""

from __future__ import annotations

import pytest
from django.db import transaction

from bench.workloads import workload_import, workload_import_baseline
from followup.models import Result

pytestmark = pytest.mark.django_db


def stored_results() -> set[tuple]:
    return set(
        Result.objects.values_list(
            "visit__patient__subject_code", "visit__code", "visit__actual_date", "visit__window_start",
            "visit__window_end", "code", "value", "comparator", "entered_value", "entered_unit",
        ).exclude(code="EGFR")
    )  # fmt: skip


def test_the_import_and_its_baseline_write_the_same_rows_of_a_small_cohort():
    with transaction.atomic():  # each side into an empty registry: the import's rows are rolled back
        imported = workload_import(3)
        imported_results = stored_results()
        transaction.set_rollback(True)
    baseline = workload_import_baseline(3)

    assert (
        imported["rows"]
        == baseline["rows"]
        == {
            "patients": 3,
            "infusions": 3,
            "visits_completed": 36,
            "results": 36 * 8,  # the 7 columns of the workbook and eGFR
        }
    )
    # The same values in the same units at the same visits (the baseline's eGFR is a constant, not computed).
    assert stored_results() == imported_results and len(imported_results) == 36 * 7
    assert imported["import_s"] > 0 and imported["second_import_s"] > 0 and baseline["baseline_s"] > 0
    assert imported["peak_memory_mb"] > 0


def test_the_runner_takes_each_sides_fastest_round_and_refuses_sides_that_wrote_different_rows():
    from bench.__main__ import import_sides

    rows = {"patients": 3, "infusions": 3, "visits_completed": 36, "results": 288}
    imported = [{"rows": rows, "import_s": s, "second_import_s": 0.1, "peak_memory_mb": 200} for s in (12.0, 9.0, 10.0)]
    baseline = [{"rows": rows, "baseline_s": s, "peak_memory_mb": 190} for s in (2.0, 3.0, 1.5)]

    out = import_sides({"baseline": baseline, "import": imported})

    assert (out["import_s"], out["baseline_s"], out["ratio"]) == (9.0, 1.5, 6.0)
    assert out["rounds_import_s"] == [12.0, 9.0, 10.0] and out["rounds_baseline_s"] == [2.0, 3.0, 1.5]
    with pytest.raises(SystemExit, match="different rows"):
        import_sides({"baseline": [{**baseline[0], "rows": {**rows, "results": 252}}], "import": imported})
