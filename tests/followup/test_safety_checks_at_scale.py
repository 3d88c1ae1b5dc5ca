"""Safety checks over a whole registry: one set-based query per rule (held to the per-result rules of
tests/followup/safety_per_result.py), one run at a time, routine checks as worklist tasks, findings sorted
by severity, and a study's first run that does not flood anyone.

Reference patients (tests.factories defaults): site in Nanjing (Asia/Shanghai), day 0 2025-03-03; visits
recorded with the wall clock at SETUP (2025-10-01).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import threading
import zoneinfo
from io import StringIO

import pytest
import time_machine
from django.core import mail
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection, connections

from followup import constants as fc
from followup import safety
from followup.models import SafetyCheckRun, SafetySignal
from followup.safety import lab_findings, malignancy_findings, safety_sweep
from followup.selectors import worklist
from followup.services import visit_record
from notifications.ledger import notifications_send_due, signals_notify_sweep
from notifications.models import Notification
from registry.constants import Role
from tests.factories import make_clinical, make_user
from tests.followup import safety_per_result

pytestmark = pytest.mark.django_db

D = dt.date
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
SETUP = dt.datetime(2025, 10, 1, 12, 0, tzinfo=SHANGHAI)
VISIT_DAYS = {"BL": D(2025, 3, 2), "M1": D(2025, 4, 2), "M3": D(2025, 6, 2), "M6": D(2025, 9, 1)}


def clock(now: dt.datetime):
    return time_machine.travel(now, tick=False)


def record(clinical, code: str, **results):
    with clock(SETUP):
        return visit_record(visit=clinical.visit(code), actual_date=VISIT_DAYS[code], results=results)


def sweep(now: dt.datetime = SETUP, **kwargs):
    with clock(now):
        return safety_sweep(now=now, **kwargs)


def investigator(site, username: str = "inv_scale"):
    user = make_user(username, site, role=Role.INVESTIGATOR)
    user.email = f"{username}@registry.example"
    user.save(update_fields=["email"])
    return user


def as_tuples(findings) -> set[tuple]:
    return {(f.kind, f.dedupe_key, f.detail, f.patient_id, f.visit_id) for f in findings}


def every_kind_of_finding():
    """Two patients of one study whose results raise each lab rule, censored values and mg/dL included."""
    with clock(SETUP):
        first = make_clinical()
        second = make_clinical(site=first.site, study=first.study, lot=first.lot)
    record(first, "BL", CREAT=(80, "umol/L"), PLT=210, WBC="6.1", PROT24H=("0.1", None, "<"), SLEDAI2K=10)
    record(first, "M1", CREAT=("1.4", "mg/dL"), PLT=("50", None, "<"), WBC="2.5", PROT24H="0.3", SLEDAI2K=4)
    record(first, "M3", CREAT=70, PLT=100, WBC="3.0", PROT24H="0.5", SLEDAI2K=6)
    record(first, "M6", PROT24H=(1000, "mg/24h"), SLEDAI2K=16)  # exactly twice the previous; a severe flare
    record(second, "BL", CREAT=70, PROT24H="1.0", SLEDAI2K=8)
    record(second, "M1", CREAT=105, PROT24H="1.9", SLEDAI2K=2)  # exactly 1.5 x baseline; 1.9 x the previous
    record(second, "M3", PROT24H="4.0", SLEDAI2K=5)  # a mild/moderate flare
    return first, second


# The same findings as the per-result rules ---------------------------------------------------------------


@pytest.mark.slow
def test_set_based_rules_find_exactly_what_the_per_result_rules_find_on_a_seeded_cohort():
    call_command("seed_synthetic", patients=150, seed=11, today=D(2026, 9, 1), quiet=True, stdout=StringIO())
    every_kind_of_finding()

    found = as_tuples(lab_findings())
    assert found == safety_per_result.lab_findings()
    assert {kind for kind, *_ in found} == set(fc.SignalKind.values) - {fc.SignalKind.MALIGNANCY_CHECK}
    assert len(found) > 100
    for now in (
        dt.datetime(2026, 9, 1, 12, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 2, 15, 59, tzinfo=dt.UTC),  # 23:59 in Nanjing, 1 minute before an anniversary
        dt.datetime(2028, 2, 29, 16, 0, tzinfo=dt.UTC),  # a leap day
    ):
        questions = as_tuples(malignancy_findings(now))
        assert questions == safety_per_result.malignancy_findings(now)
        assert questions


def test_lab_findings_for_some_visits_see_the_whole_history_of_their_patients():
    first, second = every_kind_of_finding()
    m6 = first.visit("M6")

    findings = lab_findings([m6.pk])

    assert {(f.kind, f.detail) for f in findings} == {
        ("proteinuria_doubling", "Proteinuria 1 g/24h at M6, previously 0.5"),
        ("sledai_flare", "severe flare at M6: SLEDAI-2K 16"),
    }


@pytest.mark.parametrize("patients", [1, 6])
def test_the_rules_take_a_fixed_number_of_queries(django_assert_num_queries, patients):
    with clock(SETUP):
        first = make_clinical()
        for _ in range(patients - 1):
            make_clinical(site=first.site, study=first.study, lot=first.lot)
    with clock(SETUP):
        for patient in first.study.patients.all():
            visits = {v.code: v for v in patient.visits.all()}
            visit_record(visit=visits["BL"], actual_date=VISIT_DAYS["BL"], results={"PLT": 210, "PROT24H": "1.0"})
            visit_record(visit=visits["M1"], actual_date=VISIT_DAYS["M1"], results={"PLT": 90, "PROT24H": "2.5"})

    with django_assert_num_queries(5):  # creatinine, flares, cytopenias, proteinuria, malignancy
        findings = lab_findings() + malignancy_findings(SETUP + dt.timedelta(days=365))

    assert len(findings) == 3 * patients


# One run at a time -------------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_runs_started_together_on_postgresql_one_runs_and_the_other_skips(monkeypatch):
    """Two commands barrier-started in two threads (two database sessions): exactly one holds the advisory
    lock and sweeps; the other skips at once and says so. The sweep waits until the skip is seen, so that
    without the lock both would be sweeping at the same time."""
    skipped = threading.Event()
    swept = []

    def slow_sweep(**kwargs):
        swept.append(threading.get_ident())
        skipped.wait(timeout=15)
        return safety.SafetyReport()

    monkeypatch.setattr(safety, "safety_sweep", slow_sweep)
    start = threading.Barrier(2)
    outputs: list[str] = []

    def run():
        out = io.StringIO()
        try:
            start.wait(timeout=15)
            call_command("run_safety_checks", dry_run=True, stdout=out)
        finally:
            connections.close_all()
        outputs.append(out.getvalue())
        if "skipped" in out.getvalue():
            skipped.set()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(swept) == 1
    assert sorted("skipped" in out for out in outputs) == [False, True]
    assert [out for out in outputs if "skipped" in out] == [
        "skipped: another run of the safety checks is in progress\n"
    ]
    with safety.single_run() as held:  # released by the run that held it
        assert held


@pytest.fixture
def lock_held_elsewhere():
    """The safety checks' lock held by another run: another PostgreSQL session, or the cache entry."""
    if connection.vendor == "postgresql":
        other = connections.create_connection("default")
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [safety.LOCK_KEY])
        yield
        other.close()
    else:
        cache.add(safety.LOCK_NAME, "another run", timeout=60)
        yield
        cache.delete(safety.LOCK_NAME)


def test_a_run_while_another_holds_the_lock_skips_and_says_so(lock_held_elsewhere, caplog):
    _, second = every_kind_of_finding()
    sweep()  # the study's first run: now the next run would announce what it finds
    record(second, "M6", PLT=20)

    with caplog.at_level(logging.WARNING), clock(SETUP):
        call_command("run_safety_checks", stdout=(out := io.StringIO()))

    assert out.getvalue() == "skipped: another run of the safety checks is in progress\n"
    assert "skipped: another run of the safety checks is in progress" in caplog.text
    assert not SafetySignal.objects.filter(status=fc.SignalStatus.OPEN).exists()
    assert Notification.objects.count() == 0


def test_the_celery_task_skips_too_while_another_run_holds_the_lock(lock_held_elsewhere, caplog):
    from notifications.tasks import run_safety_checks

    _, second = every_kind_of_finding()
    sweep()
    record(second, "M6", PLT=20)

    with caplog.at_level(logging.WARNING), clock(SETUP):
        assert run_safety_checks() == 0

    assert "run_safety_checks skipped: another run of the safety checks is in progress" in caplog.text
    assert not SafetySignal.objects.filter(status=fc.SignalStatus.OPEN).exists()


def test_the_lock_is_released_after_a_run():
    with safety.single_run() as held:
        assert held
    with safety.single_run() as again:
        assert again


# Routine checks are worklist tasks; signals by severity --------------------------------------------------


@pytest.fixture
def established():
    """Two patients with every kind of lab finding, in a study whose checks first ran before its data."""
    with clock(SETUP):
        first = make_clinical()
        safety_sweep(now=SETUP)
        second = make_clinical(site=first.site, study=first.study, lot=first.lot)
    record(first, "BL", PLT=210, SLEDAI2K=4)
    record(first, "M1", PLT=90, SLEDAI2K=16)  # a severe flare
    record(second, "BL", CREAT=70, SLEDAI2K=8)
    record(second, "M1", CREAT=110, SLEDAI2K=2)
    record(second, "M3", SLEDAI2K=5)  # a mild/moderate flare
    return first, second


def test_findings_carry_their_severity_and_the_malignancy_question_is_routine(established):
    sweep(dt.datetime(2026, 3, 4, 10, tzinfo=SHANGHAI))

    assert sorted(SafetySignal.objects.values_list("kind", "severity", "detail")) == [
        ("creatinine_rise", fc.SignalSeverity.HIGH, "Creatinine 110 umol/L at M1, baseline 70"),
        (
            "malignancy_check",
            fc.SignalSeverity.ROUTINE,
            "Year 1 after MSCT: ask about malignancy (tumorigenicity watch)",
        ),
        (
            "malignancy_check",
            fc.SignalSeverity.ROUTINE,
            "Year 1 after MSCT: ask about malignancy (tumorigenicity watch)",
        ),
        ("sledai_flare", fc.SignalSeverity.MODERATE, "mild/moderate flare at M3: SLEDAI-2K 5"),
        ("sledai_flare", fc.SignalSeverity.SEVERE, "severe flare at M1: SLEDAI-2K 16"),
        ("thrombocytopenia", fc.SignalSeverity.MODERATE, "Platelets 90 x 10^9/L at M1"),
    ]
    assert [s.kind for s in SafetySignal.objects.all()][:2] == ["sledai_flare", "creatinine_rise"]
    assert SafetySignal.objects.all()[0].detail.startswith("severe")


def test_routine_checks_are_worklist_tasks_not_announced_and_signals_come_most_severe_first(established):
    first, _ = established
    inv = investigator(first.site)
    now = dt.datetime(2026, 3, 4, 10, tzinfo=SHANGHAI)
    sweep(now)

    with clock(now):
        notices = signals_notify_sweep(now=now)
        board = worklist(user=inv, now=now)

    assert [s.detail for s in board["signals"]][:2] == [
        "severe flare at M1: SLEDAI-2K 16",
        "Creatinine 110 umol/L at M1, baseline 70",
    ]
    assert sorted(s.kind for s in board["signals"][2:]) == ["sledai_flare", "thrombocytopenia"]
    assert [s.severity for s in board["signals"]] == [3, 2, 1, 1]
    assert [s.kind for s in board["tasks"]] == ["malignancy_check", "malignancy_check"]
    assert notices.inserted == 4
    assert set(Notification.objects.values_list("object_id", flat=True)) == {s.pk for s in board["signals"]}


def test_the_admin_lists_signals_most_severe_first(client, established):
    first, _ = established
    sweep(dt.datetime(2026, 3, 4, 10, tzinfo=SHANGHAI))
    client.force_login(investigator(first.site))

    response = client.get("/admin/followup/safetysignal/")

    assert response.status_code == 200
    page = response.content.decode()
    positions = [page.index(text) for text in ("severe flare at M1", "Creatinine 110", "Year 1 after MSCT")]
    assert positions == sorted(positions)


# A study's first run does not flood anyone ---------------------------------------------------------------


def test_a_studys_first_run_records_its_history_as_reviewed_at_import_and_announces_nothing():
    first, second = every_kind_of_finding()
    inv = investigator(first.site)

    with clock(SETUP):
        call_command("run_safety_checks", stdout=(out := io.StringIO()))

    signals = SafetySignal.objects.all()
    assert signals.count() == 9
    assert {s.status for s in signals} == {fc.SignalStatus.IMPORTED}
    assert {s.review_reason for s in signals} == {safety.IMPORT_REASON}
    assert (Notification.objects.count(), mail.outbox) == (0, [])
    assert "raised 0 new signal(s) of 9 finding(s)" in out.getvalue()
    assert f"recorded 9 finding(s) as reviewed at import (first run for {first.study.code}" in out.getvalue()
    assert list(SafetyCheckRun.objects.values_list("study_id", "findings", "raised", "imported")) == [
        (first.study.pk, 9, 0, 9)
    ]
    with clock(SETUP):
        assert worklist(user=inv, now=SETUP)["signals"] == []

    # Data recorded after the first run: announced once, to the site's investigator.
    later = SETUP + dt.timedelta(days=1)
    with clock(later):
        visit_record(visit=second.visit("M6"), actual_date=VISIT_DAYS["M6"], results={"PLT": "45"})
    with clock(later):
        call_command("run_safety_checks", stdout=(out := io.StringIO()))

    new = SafetySignal.objects.get(status=fc.SignalStatus.OPEN)
    assert (new.kind, new.visit) == ("thrombocytopenia", second.visit("M6"))
    assert "raised 1 new signal(s) of 10 finding(s)" in out.getvalue()
    assert "reviewed at import" not in out.getvalue()
    assert [m.to for m in mail.outbox] == [[inv.email]]
    assert "Platelets 45" in mail.outbox[0].body


def test_a_dry_first_run_says_what_it_would_record_as_imported_and_changes_nothing():
    every_kind_of_finding()

    with clock(SETUP):
        call_command("run_safety_checks", dry_run=True, stdout=(out := io.StringIO()))

    assert "would raise 0 new signal(s) of 9 finding(s)" in out.getvalue()
    assert "would record 9 finding(s) as reviewed at import" in out.getvalue()
    assert SafetySignal.objects.count() == SafetyCheckRun.objects.count() == 0


def test_a_signal_raised_by_a_run_keeps_an_audit_history_row():
    _, second = every_kind_of_finding()
    sweep()
    record(second, "M6", PLT=20)

    sweep(SETUP + dt.timedelta(days=1))

    signal = SafetySignal.objects.get(status=fc.SignalStatus.OPEN)
    [history] = signal.history.all()
    assert (history.history_type, history.history_change_reason, history.severity) == (
        "+",
        "raised by the safety checks",
        fc.SignalSeverity.MODERATE,
    )
    assert notifications_send_due(now=SETUP).emails == 0  # nothing queued by a sweep alone


@pytest.mark.postgres
@pytest.mark.slow
def test_the_benchmarks_raw_sql_baseline_finds_as_many_findings_as_the_checks():
    """Workload 7 compares the checks with raw SQL of the same rules; the two must find the same number."""
    from bench.workloads import safety_sql

    call_command("seed_synthetic", patients=80, seed=3, today=D(2026, 9, 1), quiet=True, stdout=StringIO())
    every_kind_of_finding()
    now = dt.datetime(2026, 9, 1, 12, tzinfo=dt.UTC)

    assert safety_sql(now) == len(lab_findings() + malignancy_findings(now)) > 50
