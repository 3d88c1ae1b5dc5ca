"""Faults around the reminders: each test counts the e-mails received per ledger key and wants exactly one.

Real PostgreSQL (pytest-django's test database, shared with the worker processes), real Redis (a private
redis-server per test where a test stops it or leaves messages behind), real Celery workers
(`celery -A config worker -P solo` with the local settings: SMTP from EMAIL_URL, Redis from REDIS_URL) and
a real SMTP server on loopback. Each e-mail names the ledger keys it carries in `X-Registry-Keys`; the
expected keys come from a hand-made table of visit stages (`support.STAGES_ON_DAY`), not from the ledger.

1. two beats at the same moment;      4. Redis stopped while visits are recorded, then started again;
2. a worker SIGKILLed mid-batch;       5. a day without any beat run;
3. a task delivered twice;            6. a visit recorded between the sweep and the send.

Scenarios 2, 3 and 4 (and the worker variant of 1) run worker processes on committed data; 1 also runs as
two threads in this process; 5 and 6 run in this process. Each test prints a line of figures
("[n ...] emails=... duplicates=... missing=..."), shown with `-rA` or `-s`.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid

import pytest
from django.db import connections
from django.db.models import Max
from django.utils import timezone

from followup import constants as c
from notifications import constants as nc
from notifications.models import Notification
from tests.integration.support import (
    WAIT,
    Worker,
    build_clinic,
    ledger_states,
    private_redis,
    process_env,
    queue_task,
    report,
    run_action,
    smtp_server,
    smtp_settings,
    tally,
    wait_for_keys,
    wait_until,
    workers_cleanup,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# Worker processes and threads read what the test wrote: committed data (a transactional test).
committed = pytest.mark.django_db(transaction=True)

SEND = "notifications.tasks.send_notifications"
SWEEP = "notifications.tasks.sweep_reminders"
CLAIM_TIMEOUT = 3  # seconds, for the workers (NOTIFICATION_CLAIM_TIMEOUT)


def expected_emails(keys: set[str]) -> int:
    """E-mails the keys make: one digest per person who wants digests, one per item for the others.

    Recipients' addresses say which they chose (`...-digest@` or `...-each@`); safety reports are
    always sent one per item.
    """
    per_recipient: dict[str, list[str]] = {}
    for key in keys:
        per_recipient.setdefault(key.rsplit(":", 1)[1], []).append(key)
    total = 0
    for email, items in per_recipient.items():
        digest_items = [k for k in items if "-digest@" in email and not k.startswith(nc.NotificationKind.AE_REPORT)]
        total += (1 if digest_items else 0) + len(items) - len(digest_items)
    return total


def wait_sent(timeout: float = WAIT) -> None:
    """Wait until no ledger row is pending or claimed any more."""
    wait_until(
        lambda: (
            not Notification.objects.filter(
                state__in=[nc.NotificationState.PENDING, nc.NotificationState.SENDING]
            ).exists()
        ),
        timeout=timeout,
        what="every ledger row to be sent",
    )


# 1. Two beats at the same moment -------------------------------------------------------------------------


@committed
def test_two_beats_at_the_same_moment_send_every_due_key_once():
    """Two threads, released together, each run the sweep then the sender (what two beats would queue)."""
    from notifications.ledger import notifications_send_due, reminders_sweep

    started = time.monotonic()
    with smtp_server(delay=0.005) as (mailbox, port), smtp_settings(port):
        clinic = build_clinic(
            day_zero_offsets=[30, 33, 16, 4] * 3, coordinators=[False, False, True, True], investigators=[True, False]
        )
        expected = clinic.expected_keys()
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []
        results: list[tuple[int, int]] = []

        def beat():
            try:
                barrier.wait(timeout=30)
                swept = reminders_sweep()
                sent = notifications_send_due()
                results.append((swept.inserted, sent.emails))
            except BaseException as exc:  # reported below: a failing thread must fail the test
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=beat, name=f"beat-{n}") for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=WAIT)
        assert not any(thread.is_alive() for thread in threads), "a beat did not finish in time"
        assert not errors, errors
        wait_for_keys(mailbox, expected, settle=0.5)

    figures = tally(mailbox, expected)
    report(
        figures.line(
            "1 two beats (threads)",
            emails_expected=expected_emails(expected),
            inserted_reported_by_each=[r[0] for r in results],
            emails_by_each=[r[1] for r in results],
            seconds=round(time.monotonic() - started, 1),
        )
    )
    figures.assert_exactly_once()
    assert figures.emails == expected_emails(expected)
    assert ledger_states() == {nc.NotificationState.SENT: len(expected)}


@committed
def test_a_sweep_overlapping_another_reports_only_the_rows_it_inserted():
    """The count a sweep reports (the task's result) is the rows *it* inserted, even when another overlaps.

    The first sweep's transaction is held open until the second sweep waits on the ledger's unique key;
    the second then inserts nothing (every row exists) and should say so.
    """
    from django.db import transaction

    from notifications.ledger import reminders_sweep

    clinic = build_clinic(day_zero_offsets=[30, 16], coordinators=[True], investigators=[])
    expected = clinic.expected_keys()
    inserted: dict[str, int] = {}
    errors: list[BaseException] = []
    first_done, release = threading.Event(), threading.Event()

    def first():
        try:
            with transaction.atomic():
                inserted["first"] = reminders_sweep().inserted
                first_done.set()
                release.wait(timeout=WAIT)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            first_done.set()
            connections.close_all()

    def second():
        try:
            first_done.wait(timeout=WAIT)
            inserted["second"] = reminders_sweep().inserted
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    try:
        with connections["default"].cursor() as cursor:

            def second_is_waiting():
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
                return cursor.fetchone()[0] > 0

            wait_until(second_is_waiting, timeout=30, what="the second sweep to wait on the first")
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=WAIT)
    assert not errors, errors
    report(f"[1 overlapping sweeps: reported counts] rows={len(expected)} inserted_reported={inserted}")
    assert Notification.objects.count() == len(expected)
    assert inserted == {"first": len(expected), "second": 0}


@pytest.mark.redis
@committed
def test_two_workers_running_the_sweep_task_at_once_send_every_due_key_once(tmp_path):
    """Two worker processes each execute `sweep_reminders` (which queues the sender) at the same moment."""
    started = time.monotonic()
    with (
        smtp_server(delay=0.01) as (mailbox, port),
        private_redis(tmp_path) as redis,
        workers_cleanup() as workers,
    ):
        env = process_env(redis_url=redis.url, smtp_port=port, var_dir=tmp_path, claim_timeout=CLAIM_TIMEOUT)
        workers += [Worker(name, env, tmp_path).start() for name in ("beat-a", "beat-b")]
        clinic = build_clinic(day_zero_offsets=[30, 33, 16, 4] * 2, coordinators=[False, True], investigators=[True])
        expected = clinic.expected_keys()
        for worker in workers:
            worker.wait_ready()
        sweep_ids = [queue_task(redis.url, SWEEP), queue_task(redis.url, SWEEP)]

        wait_for_keys(mailbox, expected)
        wait_sent()
        ran = {worker.name: sum(worker.received(task_id) for task_id in sweep_ids) for worker in workers}

    figures = tally(mailbox, expected)
    report(
        figures.line(
            "1 two beats (workers)",
            emails_expected=expected_emails(expected),
            sweeps_per_worker=ran,
            seconds=round(time.monotonic() - started, 1),
        )
    )
    assert sum(ran.values()) == 2, ran
    figures.assert_exactly_once()
    assert figures.emails == expected_emails(expected)
    assert ledger_states() == {nc.NotificationState.SENT: len(expected)}


# 2. A worker killed in the middle of a batch ----------------------------------------------------------------


@pytest.mark.redis
@committed
def test_worker_killed_mid_batch_then_a_new_worker_sends_the_rest_once(tmp_path):
    from notifications.ledger import reminders_sweep

    started = time.monotonic()
    # The 6th message is held before its reply until the worker is dead. (Killing "while the server reads a
    # message, half its delay before the 250" raced with the 250 on a busy machine: a kill that landed after
    # the 250 and before the worker's commit re-sent that message.)
    with (
        smtp_server(delay=0.01, hold=[6]) as (mailbox, port),
        private_redis(tmp_path) as redis,
        workers_cleanup() as workers,
    ):
        env = process_env(redis_url=redis.url, smtp_port=port, var_dir=tmp_path, claim_timeout=CLAIM_TIMEOUT)
        first = Worker("first", env, tmp_path).start()
        workers.append(first)
        # Two coordinators want one e-mail per item (a long batch each), one wants a digest.
        clinic = build_clinic(
            day_zero_offsets=[30, 33, 16] * 2, coordinators=[False, False, True], investigators=[True]
        )
        expected = clinic.expected_keys()
        reminders_sweep()
        assert Notification.objects.count() == len(expected)
        first.wait_ready()
        queue_task(redis.url, SEND)
        # Kill while the server holds the 6th message before its reply: five e-mails are out, one is mid-DATA,
        # more wait.
        mailbox.wait_held(6)
        first.kill()
        accepted_at_kill = mailbox.count()
        in_flight = Notification.objects.filter(state=nc.NotificationState.SENDING).count()
        pending_at_kill = Notification.objects.filter(state=nc.NotificationState.PENDING).count()
        wait_until(lambda: mailbox.client_gone(6), timeout=10, what="the server to see the killed client go")
        mailbox.release(6)
        wait_until(lambda: not mailbox.busy(), timeout=10, what="the server to drop the cut-off message")
        assert accepted_at_kill == 5 < expected_emails(expected)

        second = Worker("second", env, tmp_path).start()
        workers.append(second)
        second.wait_ready()
        # The next beat comes after the claim timeout: the dead worker's claim is taken again.
        last_claim = Notification.objects.aggregate(last=Max("claimed_at"))["last"]
        pause = (last_claim + dt.timedelta(seconds=CLAIM_TIMEOUT + 0.5) - timezone.now()).total_seconds()
        time.sleep(max(pause, 0))
        queue_task(redis.url, SEND)
        wait_for_keys(mailbox, expected)
        wait_sent()

    figures = tally(mailbox, expected)
    report(
        figures.line(
            "2 worker SIGKILLed mid-batch",
            emails_expected=expected_emails(expected),
            accepted_before_kill=accepted_at_kill,
            rows_in_flight_at_kill=in_flight,
            rows_pending_at_kill=pending_at_kill,
            message_cut_off=mailbox.dropped,
            seconds=round(time.monotonic() - started, 1),
        )
    )
    assert mailbox.dropped == 1
    assert in_flight > 0, "the kill should leave claimed rows behind"
    figures.assert_exactly_once()
    assert figures.emails == expected_emails(expected)
    assert ledger_states() == {nc.NotificationState.SENT: len(expected)}


# 3. A task delivered twice ------------------------------------------------------------------------------------


@pytest.mark.redis
@committed
def test_same_send_task_delivered_twice_to_two_workers_sends_each_key_once(tmp_path):
    """The same task message (same id) published twice, as a broker redelivery would, to two workers."""
    from notifications.ledger import reminders_sweep

    started = time.monotonic()
    with (
        smtp_server(delay=0.05) as (mailbox, port),
        private_redis(tmp_path) as redis,
        workers_cleanup() as workers,
    ):
        env = process_env(redis_url=redis.url, smtp_port=port, var_dir=tmp_path, claim_timeout=CLAIM_TIMEOUT)
        workers += [Worker(name, env, tmp_path).start() for name in ("one", "two")]
        clinic = build_clinic(
            day_zero_offsets=[30, 33, 16] * 2, coordinators=[False, False, True], investigators=[True]
        )
        expected = clinic.expected_keys()
        reminders_sweep()
        for worker in workers:
            worker.wait_ready()

        task_id = str(uuid.uuid4())
        queue_task(redis.url, SEND, task_id=task_id)
        queue_task(redis.url, SEND, task_id=task_id)
        wait_until(lambda: sum(worker.received(task_id) for worker in workers) == 2, what="both copies to be delivered")
        wait_for_keys(mailbox, expected)
        wait_sent()
        deliveries = {worker.name: worker.received(task_id) for worker in workers}

    figures = tally(mailbox, expected)
    report(
        figures.line(
            "3 same task delivered twice",
            emails_expected=expected_emails(expected),
            deliveries=deliveries,
            seconds=round(time.monotonic() - started, 1),
        )
    )
    figures.assert_exactly_once()
    assert figures.emails == expected_emails(expected)
    assert ledger_states() == {nc.NotificationState.SENT: len(expected)}


@pytest.mark.redis
@committed
def test_task_redelivered_by_redis_after_its_worker_died_sends_each_key_once(tmp_path):
    """acks_late: a worker killed after taking the send task leaves it unacknowledged; Redis redelivers it.

    The workers run with a 4-second visibility timeout (`worker_settings`), so the redelivery comes within
    the test instead of after an hour.
    """
    from notifications.ledger import reminders_sweep

    started = time.monotonic()
    with (
        smtp_server(delay=0.01, hold=[4]) as (mailbox, port),
        private_redis(tmp_path) as redis,
        workers_cleanup() as workers,
    ):
        env = process_env(
            redis_url=redis.url,
            smtp_port=port,
            var_dir=tmp_path,
            claim_timeout=CLAIM_TIMEOUT,
            DJANGO_SETTINGS_MODULE="tests.integration.worker_settings",
            INTEGRATION_VISIBILITY_TIMEOUT="4",
        )
        first = Worker("taker", env, tmp_path).start()
        workers.append(first)
        clinic = build_clinic(
            day_zero_offsets=[30, 33, 16] * 2, coordinators=[False, False, True], investigators=[True]
        )
        expected = clinic.expected_keys()
        reminders_sweep()
        first.wait_ready()
        task_id = queue_task(redis.url, SEND)
        mailbox.wait_held(4)  # the 4th message waits before its reply until the worker is dead
        first.kill()
        accepted_at_kill = mailbox.count()
        in_flight = Notification.objects.filter(state=nc.NotificationState.SENDING).count()
        wait_until(lambda: mailbox.client_gone(4), timeout=10, what="the server to see the killed client go")
        mailbox.release(4)

        second = Worker("heir", env, tmp_path).start()
        workers.append(second)
        second.wait_ready()
        # kombu's Redis transport looks for unacknowledged messages older than the visibility timeout every 10 s
        # but restores them on every 10th look only (`QoS.restore_visible(interval=10)`): when its first look
        # comes before the timeout has passed (a loaded machine), the redelivery waits for the next, ~100 s on.
        wait_until(
            lambda: second.received(task_id) >= 1, timeout=130, what="Redis to redeliver the unacknowledged task"
        )
        wait_until(lambda: f"[{task_id}] succeeded" in second.text(), what="the redelivered task to finish")
        left_after_redelivery = Notification.objects.exclude(state=nc.NotificationState.SENT).count()
        if left_after_redelivery:
            # The dead worker's claim was younger than the claim timeout when the task came back: the next
            # beat takes it.
            time.sleep(CLAIM_TIMEOUT + 0.5)
            queue_task(redis.url, SEND)
        wait_for_keys(mailbox, expected)
        wait_sent()

    figures = tally(mailbox, expected)
    report(
        figures.line(
            "3 task redelivered after SIGKILL",
            emails_expected=expected_emails(expected),
            accepted_before_kill=accepted_at_kill,
            rows_in_flight_at_kill=in_flight,
            rows_left_after_redelivery=left_after_redelivery,
            seconds=round(time.monotonic() - started, 1),
        )
    )
    figures.assert_exactly_once()
    assert figures.emails == expected_emails(expected)
    assert ledger_states() == {nc.NotificationState.SENT: len(expected)}


# 4. Redis down while visits are recorded ---------------------------------------------------------------------


@pytest.mark.redis
@committed
def test_redis_down_while_visits_are_recorded_then_the_sweep_catches_up_once(tmp_path):
    started = time.monotonic()
    with (
        smtp_server(delay=0.01) as (mailbox, port),
        private_redis(tmp_path) as redis,
        workers_cleanup() as workers,
    ):
        env = process_env(redis_url=redis.url, smtp_port=port, var_dir=tmp_path, claim_timeout=CLAIM_TIMEOUT)
        before = Worker("before-outage", env, tmp_path).start()
        workers.append(before)
        clinic = build_clinic(day_zero_offsets=[30, 33, 16, 4] * 2, coordinators=[False, True], investigators=[True])
        before.wait_ready()

        redis.stop()
        with pytest.raises(Exception):  # noqa: B017 - whatever kombu raises: the broker is really gone
            queue_task(redis.url, SWEEP)
        # A web process whose broker is down records month-1 visits (window open): every write succeeds.
        month_1 = [clinic.visit(patient, "M1") for patient in clinic.patients[:2]]
        outcome = run_action(env, "record-visits", *[str(v.pk) for v in month_1])
        assert outcome.returncode == 0, outcome.stdout + outcome.stderr
        result = json.loads(outcome.stdout.strip().splitlines()[-1])
        assert result["failed"] == {}, result
        assert sorted(result["recorded"]) == sorted(v.pk for v in month_1)
        for visit in month_1:
            visit.refresh_from_db()
            assert visit.outcome == c.VisitOutcome.COMPLETED
        assert not Notification.objects.exists(), "nothing was swept while the broker was down"

        redis.start()  # same port, empty: whatever was queued before is gone
        after = Worker("after-outage", env, tmp_path).start()
        workers.append(after)
        after.wait_ready()
        queue_task(redis.url, SWEEP)

        recorded_keys = set().union(
            *(clinic.keys_of(v, stage) for v in month_1 for stage in ("due",))  # their stage before recording
        )
        expected = clinic.expected_keys() - recorded_keys
        wait_for_keys(mailbox, expected)
        wait_sent()
        recorded_rows = Notification.objects.filter(
            kind=nc.NotificationKind.VISIT_REMINDER, object_id__in=[v.pk for v in month_1]
        ).count()

    figures = tally(mailbox, expected)
    report(
        figures.line(
            "4 Redis down, then back",
            emails_expected=expected_emails(expected),
            writes_failed=len(result["failed"]),
            reminders_for_recorded_visits=recorded_rows,
            tasks_run_by_worker_that_lived_through_outage=before.text().count("] received"),
            seconds=round(time.monotonic() - started, 1),
        )
    )
    assert recorded_rows == 0
    figures.assert_exactly_once()
    assert figures.emails == expected_emails(expected)
    assert ledger_states() == {nc.NotificationState.SENT: len(expected)}


# 5. A day without any beat run ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_day_without_any_beat_run_makes_no_catch_up_flood():
    """Sweep and send on day D, nothing on D+1, sweep and send on D+2: one e-mail per item and stage.

    On D the three patients are at days 33, 16 and 4 after day 0; on D+2 at 35, 18 and 6. Stages that
    applied only on the missed day (D7 "due" of the third patient; the AE report "late" on D+1) are never
    sent; a stage that began on the missed day and still applies (month-1 "closing", the second weekly
    overdue reminder) is sent once, on D+2.
    """
    import time_machine

    from followup import constants as fc
    from followup.services import ae_record
    from notifications.ledger import notifications_send_due, reminders_sweep, safety_reports_sweep

    day_d = dt.date(2026, 3, 2)
    moment_d = dt.datetime.combine(day_d, dt.time(9, 0), tzinfo=dt.UTC)  # 17:00 in Shanghai, after 08:00
    started = time.monotonic()
    with (
        smtp_server() as (mailbox, port),
        smtp_settings(port),
        time_machine.travel(moment_d, tick=True) as traveller,
    ):
        clinic = build_clinic(
            day_zero_offsets=[33, 16, 4],
            coordinators=[True, False],
            investigators=[True],
            time_zone="Asia/Shanghai",
            send_hour=None,  # the default 08:00 local
            safety_email="safety@faults.example",
            safety_contact_email="pv-each@sponsor.example",
        )
        assert clinic.study.reminder_policy.send_hour == 8
        # A SUSAR of the first patient whose initial report was due on D-1: late every day until submitted.
        ae = ae_record(
            patient=clinic.patients[0],
            term="Pneumonia",
            category=fc.AECategory.INFECTION,
            onset_date=day_d - dt.timedelta(days=16),
            aware_date=day_d - dt.timedelta(days=16),
            grade=3,
            serious_hospitalisation=True,
            relatedness=fc.Relatedness.POSSIBLE,
            expected=False,
        )
        assert ae.initial_report_due == day_d - dt.timedelta(days=1)
        safety_people = [p.email for p in clinic.investigators] + ["safety@faults.example", "pv-each@sponsor.example"]

        def ae_keys(day: dt.date) -> set[str]:
            return {
                f"{nc.NotificationKind.AE_REPORT}:{ae.pk}:initial-late-{day.isoformat()}:{e}" for e in safety_people
            }

        def run_day(moment: dt.datetime) -> tuple[int, int]:
            traveller.move_to(moment)
            before = mailbox.count()
            reminders_sweep(now=moment)
            safety_reports_sweep(now=moment)
            sent = notifications_send_due(now=moment)
            return sent.emails, mailbox.count() - before

        keys_d = clinic.expected_keys(0) | ae_keys(day_d)
        keys_d2 = clinic.expected_keys(2) | ae_keys(day_d + dt.timedelta(days=2))
        emails_d, received_d = run_day(moment_d)
        keys_after_d = mailbox.received_keys()
        # D+1: no beat at all.
        emails_d2, received_d2 = run_day(moment_d + dt.timedelta(days=2))
        new_on_d2 = mailbox.received_keys() - keys_after_d

    expected = keys_d | keys_d2
    figures = tally(mailbox, expected)
    skipped_stage = clinic.keys_of(clinic.visit(clinic.patients[2], "D7"), "due")  # applied only on D+1
    report(
        figures.line(
            "5 a day without beat",
            emails_expected=expected_emails(keys_d) + expected_emails(keys_d2 - keys_d),
            emails_on_d=received_d,
            emails_on_d2=received_d2,
            keys_new_on_d2=len(new_on_d2),
            seconds=round(time.monotonic() - started, 1),
        )
    )
    figures.assert_exactly_once()
    assert keys_after_d == keys_d
    assert new_on_d2 == keys_d2 - keys_d, "D+2 sends only the stages that are new on D+2"
    assert received_d == emails_d == expected_emails(keys_d)
    assert received_d2 == emails_d2 == expected_emails(keys_d2 - keys_d), "no catch-up flood on D+2"
    assert not skipped_stage & mailbox.received_keys()
    day_1 = (day_d + dt.timedelta(days=1)).isoformat()
    assert not Notification.objects.filter(stage__endswith=day_1).exists(), "nothing is made up for D+1"
    # The second weekly overdue reminder of patient 2's day-7 visit began on the missed day: sent once.
    overdue_2 = clinic.keys_of(clinic.visit(clinic.patients[1], "D7"), "overdue-2")
    assert overdue_2 <= new_on_d2
    assert all(figures_count == 1 for figures_count in (mailbox.key_counts()[k] for k in overdue_2))
    assert ledger_states() == {nc.NotificationState.SENT: len(expected)}


# 6. A visit recorded between the sweep and the send ------------------------------------------------------


@pytest.mark.django_db
def test_visit_recorded_between_sweep_and_send_gets_no_reminder():
    from followup.services import visit_record
    from followup.states import site_today
    from notifications.ledger import notifications_send_due, reminders_sweep
    from patients.services import patient_withdraw

    started = time.monotonic()
    with smtp_server() as (mailbox, port), smtp_settings(port):
        clinic = build_clinic(day_zero_offsets=[30, 33, 16], coordinators=[True, False], investigators=[True])
        all_keys = clinic.expected_keys()
        reminders_sweep()
        assert Notification.objects.count() == len(all_keys)

        # Between the sweep and the send: patient 1's month-1 visit (window open, "due") is recorded, and
        # patient 3 withdraws.
        month_1 = clinic.visit(clinic.patients[0], "M1")
        visit_record(visit=month_1, actual_date=site_today(clinic.site))
        withdrawn = clinic.patients[2]
        patient_withdraw(patient=withdrawn, on_date=site_today(clinic.site), reason="Moved to another province")

        sent = notifications_send_due()

    recorded_keys = clinic.keys_of(month_1, "due")
    withdrawn_keys = clinic.expected_keys(patients=[withdrawn])
    expected = all_keys - recorded_keys - withdrawn_keys
    figures = tally(mailbox, expected)
    cancelled = {row.key: row.last_error for row in Notification.objects.filter(state=nc.NotificationState.CANCELLED)}
    report(
        figures.line(
            "6 visit recorded between sweep and send",
            emails_expected=expected_emails(expected),
            cancelled=len(cancelled),
            seconds=round(time.monotonic() - started, 1),
        )
    )
    figures.assert_exactly_once()
    assert figures.emails == sent.emails == expected_emails(expected)
    assert set(cancelled) == recorded_keys | withdrawn_keys
    assert all(cancelled[key] == "the visit is no longer open" for key in recorded_keys), cancelled
    assert all(cancelled[key] for key in withdrawn_keys), "every cancelled row says why"
    assert ledger_states() == {
        nc.NotificationState.SENT: len(expected),
        nc.NotificationState.CANCELLED: len(recorded_keys | withdrawn_keys),
    }
