"""The sender, message by message: the claim proven and renewed before each message, the item re-checked
right before its own message, a stable Message-ID, permanent and temporary SMTP errors, resending.

Patients and dates as in `test_reminders.py`: on 2026-02-10 the month-1 visit of each patient is "due".
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import uuid

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend

from followup.services import visit_record
from notifications import constants as nc
from notifications import delivery
from notifications.ledger import notification_resend
from notifications.models import Notification
from registry.constants import Role
from tests.notifications.test_reminders import clock, keys_header, member, send, sh, sweep, transplanted, visit

pytestmark = pytest.mark.django_db

NOW = sh(2, 10, hour=9)


class ScriptedBackend(LocmemBackend):
    """The locmem outbox, with something happening during each send: `before[n]` runs before the n-th
    message is accepted (and may raise, as the server would), numbering from 0."""

    before: dict[int, object] = {}
    calls = 0

    def send_messages(self, messages):
        n = ScriptedBackend.calls
        ScriptedBackend.calls += 1
        action = ScriptedBackend.before.get(n)
        if action is not None:
            action(messages)
        return super().send_messages(messages)


@pytest.fixture
def scripted(settings):
    settings.EMAIL_BACKEND = f"{__name__}.ScriptedBackend"
    ScriptedBackend.before, ScriptedBackend.calls = {}, 0
    return ScriptedBackend.before


def raising(exc: BaseException):
    def action(messages):
        raise exc

    return action


@pytest.fixture
def each(site_a):
    """A coordinator who wants one e-mail per item: a batch of one message per visit."""
    return member("coord_each", site_a, Role.COORDINATOR, digest=False)


@pytest.fixture
def coord(site_a):
    return member("coord_a", site_a, Role.COORDINATOR)


@pytest.fixture
def three(study, site_a):
    return [transplanted(study, site_a, f"A-00{n}") for n in (1, 2, 3)]


def states() -> list[str]:
    return list(Notification.objects.order_by("object_id").values_list("state", flat=True))


# One message at a time ----------------------------------------------------------------------------------


def test_a_visit_recorded_while_the_batch_is_sent_gets_no_reminder(scripted, three, each):
    sweep(sh(2, 10, hour=7))
    later = visit(three[2], "M1")

    def record(messages):
        visit_record(visit=later, actual_date=dt.date(2026, 2, 10), results={"WEIGHT": "55"})

    scripted[0] = record
    report = send(NOW)

    assert (report.emails, report.sent, report.cancelled) == (2, 2, 1)
    assert later.pk not in {int(key.split(":")[1]) for m in mail.outbox for key in keys_header(m)}
    cancelled = Notification.objects.get(state="cancelled")
    assert (cancelled.object_id, cancelled.last_error) == (later.pk, "the visit is no longer open")


def test_rows_another_worker_took_over_mid_batch_are_skipped(scripted, three, each):
    sweep(sh(2, 10, hour=7))
    other = uuid.uuid4()
    chosen = []

    def take_over(messages):  # the claim expired and another worker claimed a row of a later message
        being_sent = {key for m in messages for key in keys_header(m)}
        later = [row for row in Notification.objects.filter(state="sending") if row.key not in being_sent]
        chosen.append(later[0])
        Notification.objects.filter(pk=later[0].pk).update(claim_token=other)

    scripted[0] = take_over
    report = send(NOW)
    (taken,) = chosen

    assert (report.emails, report.skipped) == (2, 1)
    assert taken.key not in {key for m in mail.outbox for key in keys_header(m)}
    taken.refresh_from_db()
    assert (taken.state, taken.claim_token) == ("sending", other)


def test_a_long_batch_renews_its_claim_before_each_message(scripted, three, each):
    sweep(sh(2, 10, hour=7))
    seen = []

    def look(messages):
        seen.append(sorted(Notification.objects.filter(state="sending").values_list("claimed_at", flat=True)))

    scripted[0] = scripted[1] = scripted[2] = look
    moments = [NOW + dt.timedelta(minutes=m) for m in (0, 4, 8)]

    def at(n):
        def move(messages):
            traveller.move_to(moments[n])
            look(messages)

        return move

    with clock(NOW) as traveller:
        scripted[1], scripted[2] = at(1), at(2)
        from notifications.ledger import notifications_send_due

        traveller.move_to(moments[0])
        notifications_send_due(now=NOW)

    assert states() == ["sent"] * 3
    # Before the 2nd message (4 min in) the rows still to send were renewed at the 2nd message's proof.
    assert seen[0] == [NOW] * 3
    assert seen[1] == [moments[0]] * 2
    assert seen[2] == [moments[1]]


def test_each_message_carries_a_message_id_derived_from_its_keys(three, each, coord):
    sweep(sh(2, 10, hour=7))

    send(NOW)

    for message in mail.outbox:
        keys = keys_header(message)
        assert message.extra_headers["Message-ID"] == delivery.message_id(keys)
        assert set(Notification.objects.filter(recipient_email=message.to[0]).values_list("message_id", flat=True)) >= {
            delivery.message_id(keys)
        }
    digest = next(m for m in mail.outbox if m.to == [coord.email])
    assert len(keys_header(digest)) == 3
    assert delivery.message_id(sorted(keys_header(digest), reverse=True)) == digest.extra_headers["Message-ID"]


def test_a_row_taken_over_from_a_worker_that_stopped_after_sending_is_sent_again_and_logged(
    settings, three, each, caplog
):
    settings.NOTIFICATION_CLAIM_TIMEOUT = 60
    sweep(sh(2, 10, hour=7))
    row = Notification.objects.get(object_id=visit(three[0], "M1").pk)
    mid = delivery.message_id([row.key])
    # A worker proved the row and stamped its Message-ID, the server said 250, and the worker died.
    Notification.objects.filter(pk=row.pk).update(
        state="sending", claim_token=uuid.uuid4(), claimed_at=NOW - dt.timedelta(seconds=61), attempts=1, message_id=mid
    )

    with caplog.at_level(logging.WARNING, logger="notifications.ledger"):
        report = send(NOW)

    assert (report.emails, report.possible_duplicates) == (3, 1)
    again = next(m for m in mail.outbox if keys_header(m) == {row.key})
    assert again.extra_headers["Message-ID"] == mid
    warnings = [r.getMessage() for r in caplog.records if "possible duplicate" in r.getMessage()]
    assert len(warnings) == 1 and row.key in warnings[0] and mid in warnings[0]


def test_a_claim_expired_before_any_message_went_out_is_taken_without_a_warning(settings, three, each, caplog):
    settings.NOTIFICATION_CLAIM_TIMEOUT = 60
    sweep(sh(2, 10, hour=7))
    Notification.objects.update(state="sending", claim_token=uuid.uuid4(), claimed_at=NOW - dt.timedelta(seconds=61))

    with caplog.at_level(logging.WARNING, logger="notifications.ledger"):
        report = send(NOW)

    assert (report.emails, report.possible_duplicates) == (3, 0)
    assert not [r for r in caplog.records if "possible duplicate" in r.getMessage()]


# SMTP errors -------------------------------------------------------------------------------------------

PERMANENT = [
    smtplib.SMTPDataError(554, b"5.7.1 Message rejected"),
    smtplib.SMTPRecipientsRefused({"coord_each@registry.example": (550, b"5.1.1 No such user")}),
    smtplib.SMTPSenderRefused(553, b"5.7.1 Sender not allowed", "registry@localhost"),
]
TEMPORARY = [
    smtplib.SMTPDataError(451, b"4.3.0 Try again later"),
    smtplib.SMTPRecipientsRefused({"coord_each@registry.example": (450, b"4.2.1 Mailbox busy")}),
    smtplib.SMTPSenderRefused(452, b"4.3.1 Insufficient system storage", "registry@localhost"),
]
UNREACHABLE = [
    smtplib.SMTPSenderRefused(421, b"4.7.0 Too many connections", "registry@localhost"),
    smtplib.SMTPConnectError(421, b"4.3.2 Service not available"),
    ConnectionRefusedError(111, "Connection refused"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError("timed out"),
    smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
]


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: type(e).__name__)
def test_a_permanent_smtp_error_fails_the_item_at_once(scripted, three, each, error):
    sweep(sh(2, 10, hour=7))
    scripted[0] = raising(error)

    report = send(NOW)

    assert (report.failed, report.retried, report.emails) == (1, 0, 2)
    failed = Notification.objects.get(state="failed")
    assert (failed.attempts, failed.failed_at, failed.claim_token) == (1, NOW, None)
    assert failed.last_error.startswith("permanent (5")


@pytest.mark.parametrize("error", TEMPORARY, ids=lambda e: type(e).__name__)
def test_a_temporary_error_retries_the_item_later_and_it_is_sent(scripted, three, each, error):
    sweep(sh(2, 10, hour=7))
    scripted[0] = raising(error)

    report = send(NOW)

    assert (report.failed, report.retried, report.emails) == (0, 1, 2)
    waiting = Notification.objects.get(state="pending")
    assert (waiting.send_after, waiting.first_attempt_at, waiting.message_id) == (
        NOW + dt.timedelta(minutes=1),
        NOW,
        "",
    )
    assert waiting.last_error.startswith("temporary")
    assert send(NOW + dt.timedelta(minutes=1)).sent == 1
    waiting.refresh_from_db()
    assert (waiting.state, waiting.attempts) == ("sent", 2)


@pytest.mark.parametrize("error", UNREACHABLE, ids=lambda e: type(e).__name__)
def test_an_unreachable_server_stops_the_run_and_every_item_is_retried_later(scripted, three, each, coord, error):
    """No server to talk to: the run does not wait for the same timeout message after message."""
    sweep(sh(2, 10, hour=7))
    scripted[0] = raising(error)

    report = send(NOW)

    assert (report.emails, report.failed, report.retried, report.unreachable) == (0, 0, 3, True)
    assert ScriptedBackend.calls == 1, "one attempt, then the run stops"
    untouched = Notification.objects.filter(state="pending", attempts=0).count()
    assert untouched == Notification.objects.count() - 3, "the next recipient's items wait for the next run"
    assert set(Notification.objects.filter(attempts=1).values_list("send_after", flat=True)) == {
        NOW + dt.timedelta(minutes=1)
    }
    assert send(NOW + dt.timedelta(minutes=1)).emails == 4  # 3 items to one, a digest of 3 to the other


def test_backoff_grows_and_is_capped():
    assert [delivery.backoff(n).total_seconds() / 60 for n in range(1, 8)] == [1, 4, 16, 64, 120, 120, 120]


# Resending ---------------------------------------------------------------------------------------------


def test_resend_moves_a_retrying_item_to_the_head_of_the_queue_with_a_fresh_day(scripted, three, each):
    sweep(sh(2, 10, hour=7))
    scripted[0] = raising(smtplib.SMTPDataError(451, b"4.3.0 Try again later"))
    send(NOW)
    row = Notification.objects.get(state="pending")
    later = NOW + dt.timedelta(seconds=20)

    with clock(later):
        notification_resend(notification=row)

    row.refresh_from_db()
    assert (row.state, row.send_after, row.attempts, row.first_attempt_at, row.last_error) == (
        "pending",
        later,
        0,
        None,
        "",
    )


def test_resend_refuses_an_item_waiting_for_its_first_attempt(three, each):
    sweep(sh(2, 10, hour=7))

    with clock(NOW), pytest.raises(ValidationError) as excinfo:
        notification_resend(notification=Notification.objects.first())

    assert "retrying" in excinfo.value.message_dict["state"][0]
    assert set(states()) == {nc.NotificationState.PENDING}
