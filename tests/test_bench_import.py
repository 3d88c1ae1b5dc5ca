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
