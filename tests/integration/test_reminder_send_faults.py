"""Faults while the sender is sending: each test counts the e-mails received per ledger key.

Real PostgreSQL (pytest-django's test database), real Celery workers with a private Redis, and a real SMTP
server on loopback that can hold a message before its reply, refuse it (451, 554), or never answer.

7. a worker killed after the server's 250 and before the row is marked sent: the one message in that
   window is sent again, with the same Message-ID, and logged as a possible duplicate; the window measured;
8. the worker's PostgreSQL connections cut mid-send: nothing sent twice, nothing left to the claim timeout;
9. a claim older than the claim timeout while its batch is still sending: nothing sent twice;
10. visits recorded while their recipient's batch is being sent: no reminder for them;
11. SMTP 451 (retried, then sent), 554 (failed at once, on the admin home), connection refused, a server
    that never answers (bounded by EMAIL_TIMEOUT).
"""

from __future__ import annotations

import datetime as dt
import statistics
import time

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from followup.services import visit_record
from followup.states import site_today
from notifications import constants as nc
from notifications.models import Notification
from tests.integration.support import (
    WAIT,
    Mailbox,
    Worker,
    build_clinic,
    database_url,
    free_port,
    ledger_states,
    private_redis,
    process_env,
    queue_task,
    report,
    smtp_server,
    smtp_settings,
    stalled_smtp_server,
    tally,
    wait_for_keys,
    wait_until,
    workers_cleanup,
)
from tests.integration.test_reminder_faults import CLAIM_TIMEOUT, SEND, committed, expected_emails, wait_sent

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SENT = nc.NotificationState.SENT


def rows_of(keys) -> list[int]:
    ids = []
    for key in keys:
        kind, object_id, stage, email = key.split(":", 3)
        ids.append(Notification.objects.get(kind=kind, object_id=int(object_id), stage=stage, recipient_email=email).pk)
    return ids


def window_ms(mailbox) -> dict[str, float]:
    """From the server's 250 to the row's `sent_at` (stamped just before the marking commits), per message."""
    sent_at = dict(Notification.objects.filter(state=SENT).values_list("message_id", "sent_at"))
    once = {mid for mid, n in copies_by_message_id(mailbox).items() if n == 1}  # not the killed worker's
    spans = [
        (sent_at[m.message_id].timestamp() - m.accepted_at) * 1000
        for m in mailbox.snapshot()
        if m.message_id in sent_at and m.message_id in once
    ]
    return {"median": round(statistics.median(spans), 1), "max": round(max(spans), 1), "n": len(spans)}


def terminate_other_connections() -> int:
    """pg_terminate_backend every other connection to the test database (the workers'): the server stays up."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def copies_by_message_id(mailbox) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in mailbox.snapshot():
        counts[message.message_id] = counts.get(message.message_id, 0) + 1
    return counts


# 7. Killed between the 250 and the commit -------------------------------------------------------------------


@pytest.mark.redis
@committed
def test_worker_killed_after_the_250_before_the_commit_resends_that_message_once_with_its_message_id(tmp_path):
    """The rows of the 4th message are locked while the server answers 250, so the worker blocks on marking
    them sent; it is killed there (and its blocked connection ended), then the lock is released."""
    from notifications.ledger import reminders_sweep

    started = time.monotonic()
    with (
        smtp_server(delay=0.01, hold=[4]) as (mailbox, port),
        private_redis(tmp_path) as redis,
        workers_cleanup() as workers,
    ):
        env = process_env(redis_url=redis.url, smtp_port=port, var_dir=tmp_path, claim_timeout=CLAIM_TIMEOUT)
        first = Worker("first", env, tmp_path).start()
        workers.append(first)
        clinic = build_clinic(day_zero_offsets=[30, 33, 16] * 2, coordinators=[False, True], investigators=[True])
        expected = clinic.expected_keys()
        reminders_sweep()
        first.wait_ready()
        queue_task(redis.url, SEND)

        held_keys = mailbox.wait_held(4)
        ids = rows_of(held_keys)
        with psycopg.connect(database_url()) as lock:
            lock.execute("SELECT id FROM followup_notification WHERE id = ANY(%s) FOR UPDATE", [ids])
            mailbox.release(4)  # the server says 250; the worker now waits on our lock to mark the rows sent

            def blocked() -> list[int]:
                found = lock.execute(
                    "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [lock.info.backend_pid]
                ).fetchall()
                return [pid for (pid,) in found]

            waiting = wait_until(blocked, what="the worker to block on marking the accepted message sent")
            first.kill()
            for pid in waiting:  # the dead worker's statement must not run once the lock is gone
                lock.execute("SELECT pg_terminate_backend(%s)", [pid])
            lock.rollback()
        accepted_at_kill = mailbox.count()
        left_sending = Notification.objects.filter(pk__in=ids, state=nc.NotificationState.SENDING).count()

        second = Worker("second", env, tmp_path).start()
        workers.append(second)
        second.wait_ready()
        time.sleep(CLAIM_TIMEOUT + 0.5)  # the next beat, after the claim timeout
        queue_task(redis.url, SEND)
        wait_for_keys(mailbox, expected)
        wait_sent()
        window = window_ms(mailbox)
        warned = [line for line in second.text().splitlines() if "possible duplicate" in line]

    figures = tally(mailbox, expected)
    copies = copies_by_message_id(mailbox)
    twice = {mid: n for mid, n in copies.items() if n > 1}
    report(
        figures.line(
            "7 worker SIGKILLed between the 250 and the commit",
            emails_expected=expected_emails(expected),
            accepted_before_kill=accepted_at_kill,
            messages_sent_twice=len(twice),
            same_message_id=all(n == 2 for n in twice.values()),
            possible_duplicate_warnings=len(warned),
            window_250_to_commit_ms=window,
            seconds=round(time.monotonic() - started, 1),
        )
    )
    assert left_sending == len(ids), "the kill came after the 250 and before the marking"
    assert not figures.missing and not figures.unexpected
    assert set(figures.duplicates) == set(held_keys), "only the message in the window is sent again"
    assert len(twice) == 1 and list(twice.values()) == [2], "one message, twice, under the same Message-ID"
    assert len(warned) == 1 and all(key in warned[0] for key in held_keys)
    assert figures.emails == expected_emails(expected) + 1
    assert ledger_states() == {SENT: len(expected)}


# 8. PostgreSQL connections cut mid-send ----------------------------------------------------------------------


@pytest.mark.redis
@committed
def test_database_connections_cut_mid_send_lose_nothing_and_send_nothing_twice(tmp_path):
    """The worker's connections are ended (pg_terminate_backend) three times while the server holds a message
    before its 250: the worker reconnects to mark it sent and carries on. The claim timeout is ten minutes,
    so a row left claimed would not be sent within the test."""
    from notifications.ledger import reminders_sweep

    cuts = [2, 5, 8]
    started = time.monotonic()
    with (
        smtp_server(delay=0.01, hold=cuts) as (mailbox, port),
        private_redis(tmp_path) as redis,
        workers_cleanup() as workers,
    ):
        env = process_env(redis_url=redis.url, smtp_port=port, var_dir=tmp_path, claim_timeout=600)
        worker = Worker("cut", env, tmp_path).start()
        workers.append(worker)
        clinic = build_clinic(day_zero_offsets=[30, 33, 16] * 2, coordinators=[False, True], investigators=[True])
        expected = clinic.expected_keys()
        reminders_sweep()
        worker.wait_ready()
        task_id = queue_task(redis.url, SEND)
        ended = []
        for n in cuts:
            mailbox.wait_held(n)
            ended.append(terminate_other_connections())
            mailbox.release(n)
        wait_until(lambda: f"[{task_id}] succeeded" in worker.text(), what="the send task to finish")
        stranded = Notification.objects.exclude(state=SENT).count()
        wait_for_keys(mailbox, expected, settle=0.5)
        reconnects = worker.text().count("database connection lost")

    figures = tally(mailbox, expected)
    report(
        figures.line(
            "8 PostgreSQL connections cut mid-send",
            emails_expected=expected_emails(expected),
            connections_ended=ended,
            reconnects=reconnects,
            rows_stranded_after_the_task=stranded,
            seconds=round(time.monotonic() - started, 1),
        )
    )
    assert all(n >= 1 for n in ended), ended
    assert reconnects >= len(cuts)
    figures.assert_exactly_once()
    assert stranded == 0
    assert figures.emails == expected_emails(expected)
    assert ledger_states() == {SENT: len(expected)}


# 9. A claim older than the claim timeout while its batch still sends -----------------------------------------


@pytest.mark.redis
@committed
def test_a_batch_longer_than_the_claim_timeout_keeps_its_claim_and_nothing_is_sent_twice(tmp_path):
    from notifications.ledger import reminders_sweep

    claim_timeout, delay = 2, 0.3
    started = time.monotonic()
    with (
        smtp_server(delay=delay) as (mailbox, port),
        private_redis(tmp_path) as redis,
        workers_cleanup() as workers,
    ):
        env = process_env(redis_url=redis.url, smtp_port=port, var_dir=tmp_path, claim_timeout=claim_timeout)
        workers += [Worker(name, env, tmp_path).start() for name in ("long", "eager")]
        clinic = build_clinic(day_zero_offsets=[30, 33, 16] * 2, coordinators=[False], investigators=[True])
        expected = clinic.expected_keys()
        reminders_sweep()
        for worker in workers:
            worker.wait_ready()
        queue_task(redis.url, SEND)
        wait_until(lambda: mailbox.count() >= 1, what="the first message")
        first_at = time.monotonic()
        time.sleep(claim_timeout + 0.5)  # the batch's claim is now older than the claim timeout
        still_sending = Notification.objects.filter(state=nc.NotificationState.SENDING).count()
        queue_task(redis.url, SEND)  # the other worker runs the sender while the batch goes on
        wait_for_keys(mailbox, expected)
        wait_sent()
        batch_seconds = round(mailbox.snapshot()[-1].at - first_at, 1)

    figures = tally(mailbox, expected)
    report(
        figures.line(
            "9 claim older than its timeout mid-batch",
            emails_expected=expected_emails(expected),
            claim_timeout_s=claim_timeout,
            batch_s=batch_seconds,
            rows_still_sending_at_second_run=still_sending,
            seconds=round(time.monotonic() - started, 1),
        )
    )
    assert still_sending > 0 and batch_seconds > claim_timeout
    figures.assert_exactly_once()
    assert figures.emails == expected_emails(expected)
    assert ledger_states() == {SENT: len(expected)}


# 10. Visits recorded while their recipient's batch is being sent ----------------------------------------------


@pytest.mark.redis
@committed
def test_visits_recorded_while_their_recipients_batch_is_sent_get_no_reminder(tmp_path):
    from notifications.ledger import reminders_sweep

    started = time.monotonic()
    with (
        smtp_server(delay=0.01, hold=[2]) as (mailbox, port),
        private_redis(tmp_path) as redis,
        workers_cleanup() as workers,
    ):
        env = process_env(redis_url=redis.url, smtp_port=port, var_dir=tmp_path, claim_timeout=CLAIM_TIMEOUT)
        worker = Worker("sender", env, tmp_path).start()
        workers.append(worker)
        clinic = build_clinic(day_zero_offsets=[30, 33] * 5, coordinators=[False], investigators=[True])
        all_keys = clinic.expected_keys()
        reminders_sweep()
        worker.wait_ready()
        queue_task(redis.url, SEND)

        out = set(mailbox.wait_held(2)) | mailbox.received_keys()
        month_1 = [clinic.visit(p, "M1") for p in clinic.patients]
        later = [v for v in month_1 if not clinic.keys_of(v, "due") & out][:10]
        for visit in later:  # recorded while the batch is being sent
            visit_record(visit=visit, actual_date=site_today(clinic.site))
        mailbox.release(2)
        recorded_keys = set().union(*(clinic.keys_of(v, "due") for v in later))
        expected = all_keys - recorded_keys
        wait_for_keys(mailbox, expected)
        wait_sent()

    figures = tally(mailbox, expected)
    sent_for_recorded = len(recorded_keys & mailbox.received_keys())
    cancelled = Notification.objects.filter(state=nc.NotificationState.CANCELLED)
    report(
        figures.line(
            "10 visits recorded mid-batch",
            emails_expected=expected_emails(expected),
            visits_recorded=len(later),
            reminders_for_them=sent_for_recorded,
            cancelled=cancelled.count(),
            seconds=round(time.monotonic() - started, 1),
        )
    )
    assert len(later) >= 8
    assert sent_for_recorded == 0
    figures.assert_exactly_once()
    assert {row.key for row in cancelled} == recorded_keys
    assert {row.last_error for row in cancelled} == {"the visit is no longer open"}


# 11. What the SMTP server answers ------------------------------------------------------------------------------


def _clinic():
    return build_clinic(day_zero_offsets=[30, 16], coordinators=[False, True], investigators=[True])


@pytest.mark.django_db
def test_smtp_451_is_retried_later_and_then_sent():
    from notifications.ledger import notifications_send_due, reminders_sweep

    with smtp_server(replies={1: "451 4.3.0 Try again later"}) as (mailbox, port), smtp_settings(port):
        clinic = _clinic()
        expected = clinic.expected_keys()
        reminders_sweep()
        first = notifications_send_due()
        waiting = Notification.objects.get(state=nc.NotificationState.PENDING)
        second = notifications_send_due(now=waiting.send_after)

    figures = tally(mailbox, expected)
    report(figures.line("11 SMTP 451", refused=len(mailbox.refused), retried=first.retried, sent_later=second.sent))
    assert (first.retried, first.failed, second.sent) == (1, 0, 1)
    assert waiting.last_error.startswith("temporary (451)")
    figures.assert_exactly_once()
    assert ledger_states() == {SENT: len(expected)}


@pytest.mark.django_db
def test_smtp_554_fails_at_once_and_shows_on_the_admin_home(client):
    from notifications.ledger import notifications_send_due, reminders_sweep

    with smtp_server(replies={1: "554 5.7.1 Message rejected"}) as (mailbox, port), smtp_settings(port):
        clinic = _clinic()
        expected = clinic.expected_keys()
        reminders_sweep()
        sent = notifications_send_due()
    refused_keys = set(mailbox.refused[0][2])
    client.force_login(clinic.coordinators[0].user)
    home = client.get("/admin/").content.decode()

    figures = tally(mailbox, expected - refused_keys)
    failed = Notification.objects.get(state=nc.NotificationState.FAILED)
    report(figures.line("11 SMTP 554", failed=sent.failed, attempts=failed.attempts))
    assert (sent.failed, sent.retried, failed.attempts) == (1, 0, 1)
    assert failed.last_error.startswith("permanent (554)")
    assert {failed.key} == refused_keys
    figures.assert_exactly_once()
    assert 'id="email-alert"' in home and "1 e-mail item failed" in home


@pytest.mark.django_db
def test_connection_refused_keeps_every_item_for_a_later_attempt():
    from notifications.ledger import notifications_send_due, reminders_sweep

    with smtp_settings(free_port()):  # nothing listens there
        clinic = _clinic()
        expected = clinic.expected_keys()
        reminders_sweep()
        sent = notifications_send_due()

    waiting = Notification.objects.filter(state=nc.NotificationState.PENDING, attempts=1)
    figures = tally(Mailbox(), set())  # nothing can arrive: every item waits for a later attempt
    report(figures.line("11 connection refused", keys_queued=len(expected), retried=sent.retried, failed=sent.failed))
    assert (sent.emails, sent.failed, sent.unreachable) == (0, 0, True)
    assert waiting.count() == sent.retried > 0
    assert all(row.last_error.startswith("temporary") for row in waiting)
    assert Notification.objects.filter(attempts=0).count() == len(expected) - sent.retried


@pytest.mark.django_db
def test_a_stalled_smtp_session_is_bounded_by_email_timeout():
    from notifications.ledger import notifications_send_due, reminders_sweep

    timeout = 1
    with stalled_smtp_server() as port, smtp_settings(port, timeout=timeout):
        clinic = _clinic()
        expected = clinic.expected_keys()
        reminders_sweep()
        began = time.monotonic()
        sent = notifications_send_due()
        held = time.monotonic() - began

    figures = tally(Mailbox(), set())  # the server never answers: every item waits for a later attempt
    report(
        figures.line(
            "11 stalled SMTP session",
            keys_queued=len(expected),
            email_timeout_s=timeout,
            worker_held_s=round(held, 1),
            retried=sent.retried,
        )
    )
    assert sent.unreachable and sent.emails == 0 and sent.retried > 0
    assert held < timeout + WAIT / 6, "one timeout, not one per message"
    row = Notification.objects.filter(attempts=1).first()
    assert row.state == nc.NotificationState.PENDING and "timed out" in row.last_error
    assert row.send_after <= timezone.now() + dt.timedelta(minutes=1)
