"""The admin's import jobs under concurrent use, on PostgreSQL: a check imported twice at once makes one
import; two imports of the same files into one study at once leave each record once, the second finding the
first's rows unchanged."""

from __future__ import annotations

import threading

import pytest

from intake.constants import ImportState
from intake.models import ImportFile, ImportJob
from intake.services import importing, jobs
from patients.models import Patient, TransplantEvent
from registry.constants import Role
from tests.concurrency import released_together
from tests.factories import make_lot, make_user
from tests.intake.cohort import LOT, PATIENTS, cohort_files

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_check_imported_twice_at_once_makes_one_import(study, site_a, queued):
    make_lot(study, site_a, lot_number=LOT)
    user = make_user("coord_race", site_a, role=Role.COORDINATOR)
    check = jobs.import_job_run(job_id=jobs.import_job_request(study=study, user=user, files=cohort_files()).pk)
    assert check.state == ImportState.DONE and not check.report["problems"]

    outcomes = released_together(4, lambda _: jobs.import_job_from_check(check=check, user=user))

    made = [o for o in outcomes if isinstance(o, ImportJob)]
    refused = [str(o) for o in outcomes if not isinstance(o, ImportJob)]
    assert len(made) == 1 and refused == ["['These files were already imported.']"] * 3
    assert ImportJob.objects.filter(dry_run=False).count() == 1
    assert ImportFile.objects.filter(job=made[0]).count() == 5 and not ImportFile.objects.filter(job=check).exists()


def _read_then_wait(monkeypatch):
    """Make the next two imports each read the study's records before either writes: each believes every
    patient is new."""
    loaded, waited = threading.Barrier(2), set()
    load = importing._Run.__init__

    def load_then_wait(self, **kwargs):
        load(self, **kwargs)
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            loaded.wait(timeout=30)

    monkeypatch.setattr(importing._Run, "__init__", load_then_wait)


def test_two_imports_of_the_same_files_at_once_write_each_record_once(study, site_a, queued, monkeypatch):
    make_lot(study, site_a, lot_number=LOT)
    first = make_user("coord_one", site_a, role=Role.COORDINATOR)
    second = make_user("coord_two", site_a, role=Role.COORDINATOR)
    asked = [
        jobs.import_job_request(study=study, user=user, files=cohort_files(), dry_run=False) for user in (first, second)
    ]
    _read_then_wait(monkeypatch)

    outcomes = released_together(2, lambda i: jobs.import_job_run(job_id=asked[i].pk))

    assert [o.state for o in outcomes] == [ImportState.DONE, ImportState.DONE], [o.error for o in outcomes]
    changes = sorted(o.report["changes"] for o in outcomes)
    assert changes[0] == 0 and changes[1] > 0
    assert Patient.objects.filter(study=study).count() == 2
    assert TransplantEvent.objects.count() == 3


def test_a_check_while_the_same_files_are_imported_finishes_and_the_import_writes(study, site_a, queued, monkeypatch):
    make_lot(study, site_a, lot_number=LOT)
    importer = make_user("coord_importer", site_a, role=Role.COORDINATOR)
    checker = make_user("coord_checker", site_a, role=Role.COORDINATOR)
    imported = jobs.import_job_request(study=study, user=importer, files=cohort_files(), dry_run=False)
    checked = jobs.import_job_request(study=study, user=checker, files=cohort_files(), dry_run=True)
    _read_then_wait(monkeypatch)

    outcomes = released_together(2, lambda i: jobs.import_job_run(job_id=(imported, checked)[i].pk))

    assert [o.state for o in outcomes] == [ImportState.DONE, ImportState.DONE], [o.error for o in outcomes]
    assert [o.report["problems"] for o in outcomes] == [[], []]
    assert outcomes[0].report["written"] and not outcomes[1].report["written"]
    assert Patient.objects.filter(study=study).count() == 2 and TransplantEvent.objects.count() == 3


def test_a_job_handed_to_four_workers_at_once_runs_once(study, site_a, queued):
    make_lot(study, site_a, lot_number=LOT)
    user = make_user("coord_tasks", site_a, role=Role.COORDINATOR)
    job = jobs.import_job_request(study=study, user=user, files=cohort_files(), dry_run=False)

    outcomes = released_together(4, lambda _: jobs.import_job_run(job_id=job.pk))

    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    finished = ImportJob.objects.get(pk=job.pk)
    assert finished.state == ImportState.DONE and finished.report["changes"] > 0
    assert Patient.objects.filter(study=study).count() == 2 and TransplantEvent.objects.count() == 3


def test_two_imports_writing_the_same_patients_in_opposite_orders_both_finish(study, site_a, queued, monkeypatch):
    make_lot(study, site_a, lot_number=LOT)
    users = [make_user(f"coord_order{i}", site_a, role=Role.COORDINATOR) for i in (1, 2)]
    orders = [PATIENTS, PATIENTS[::-1]]
    asked = [
        jobs.import_job_request(study=study, user=user, files=cohort_files(patients=order), dry_run=False)
        for user, order in zip(users, orders, strict=True)
    ]
    # Each creates its first patient, then waits for the other's second: PostgreSQL breaks the deadlock.
    _read_then_wait(monkeypatch)

    outcomes = released_together(2, lambda i: jobs.import_job_run(job_id=asked[i].pk))

    assert [o.state for o in outcomes] == [ImportState.DONE, ImportState.DONE], [o.error for o in outcomes]
    assert [o.report["problems"] for o in outcomes] == [[], []]
    assert Patient.objects.filter(study=study).count() == 2 and TransplantEvent.objects.count() == 3
