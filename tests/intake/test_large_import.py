"""The size of a centre's historical cohort: 200 patients and 2,400 visits in one workbook. Its speed is
measured by workload 9 of `make bench` beside a baseline (docs/performance.md, docs/import.md "Speed"), not
here."""

from __future__ import annotations

import pytest

from devdata.historical import as_workbook, large_cohort
from followup.models import Visit
from intake.services import cohort_import
from tests.factories import make_lot

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_two_hundred_patients_import_once_and_a_second_import_changes_nothing(frozen_now, study, site_a):
    import datetime as dt

    make_lot(
        study,
        site_a,
        lot_number="UC-HIST",
        cryopreserved_on=dt.date(2014, 6, 1),
        expires_on=dt.date(2030, 6, 1),
        units=200,
    )
    workbook = as_workbook(large_cohort(200, site=site_a.code, lot="UC-HIST"))

    report = cohort_import(study=study, files=[("historical.xlsx", workbook)])

    assert report.problems == [] and report.written
    assert Visit.objects.filter(outcome="completed").count() == 2400
    again = cohort_import(study=study, files=[("historical.xlsx", workbook)])
    assert again.problems == [] and again.changes == 0 and again.counts["visits"]["unchanged"] == 2400
