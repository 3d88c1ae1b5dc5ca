"""Visit and expedited-report reminders: stages, the ledger sweep, the sender, its re-checks, claims and retries.

Reference patient: A-001 at site A (Nanjing, Asia/Shanghai, UTC+8, no DST), first infusion 2026-01-15 10:00
local, so day 0 is 2026-01-15 and the windows are BL 01-01..01-15, D7 01-20..01-24, M1 02-07..02-21,
M3 04-02..04-30, M6 07-02..07-30, M9 10-02..10-30. BL and D7 are marked completed so that a sweep in
February sees M1 alone. Every sweep and send gets an explicit `now`; the wall clock is moved to the same
instant (the services stamp claims and retries with it, and refuse data dated in the future).
"""

from __future__ import annotations

import datetime as dt
import io
import re
import smtplib
import uuid
import zoneinfo
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.mail.backends.base import BaseEmailBackend
from django.core.management import call_command

from followup import constants as fc
from followup.models import AdverseEvent, Visit
from followup.services import ae_record, ae_record_submission, ae_save, visit_record
from notifications import constants as nc
from notifications.ledger import (
    backoff,
    claim,
    notification_resend,
    notifications_send_due,
    reminders_sweep,
    safety_reports_sweep,
    send_after,
)
from notifications.models import Notification, NotificationPreference
from patients.services import patient_record_death, patient_withdraw
from registry.constants import Role
from registry.models import Membership, ReminderPolicy, Site, Study
from tests.factories import local_datetime, make_lot, make_patient, make_transplant, make_user
from tests.helpers import row_counts

pytestmark = pytest.mark.django_db

D = dt.date
UTC = dt.UTC
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
LONDON = zoneinfo.ZoneInfo("Europe/London")
DAY_ZERO = D(2026, 1, 15)
SUBJECT_CODE = re.compile(r"\b[A-Z]-\d{3}\b")


# Helpers -----------------------------------------------------------------------------------------------


def sh(month: int, day: int, hour: int = 10, year: int = 2026) -> dt.datetime:
    """An instant given as a wall-clock time in Nanjing."""
    return dt.datetime(year, month, day, hour, 0, tzinfo=SHANGHAI)


def clock(now: dt.datetime):
    return time_machine.travel(now, tick=False)


def sweep(now: dt.datetime, **kwargs):
    with clock(now):
        return reminders_sweep(now=now, **kwargs)


def send(now: dt.datetime):
    with clock(now):
        return notifications_send_due(now=now)


def member(username: str, site: Site, role: str, **preferences):
    """A staff user with an e-mail address and a role at `site` (and e-mail preferences when given)."""
    user = make_user(username, site, role=role, email=f"{username}@registry.example")
    if preferences:
        NotificationPreference.objects.create(user=user, **preferences)
    return user


def transplanted(study: Study, site: Site, code: str, *, day_zero: D = DAY_ZERO, completed=("BL", "D7")):
    """A patient infused at 10:00 local on `day_zero`, with the visits in `completed` marked as done."""
    with clock(local_datetime(day_zero, site, hour=12)):
        patient = make_patient(study, site, subject_code=code)
        make_transplant(patient, make_lot(study, site), day=day_zero, weight_kg=Decimal("55.0"))
    for visit in Visit.objects.filter(patient=patient, code__in=completed):
        Visit.objects.filter(pk=visit.pk).update(outcome=fc.VisitOutcome.COMPLETED, actual_date=visit.window_start)
    return patient


def visit(patient, code: str) -> Visit:
    return Visit.objects.get(patient=patient, code=code)


def rows(**filters) -> list[tuple]:
    return sorted(Notification.objects.filter(**filters).values_list("kind", "object_id", "stage", "recipient_email"))


def subject_codes_in(message) -> set[str]:
    html = message.alternatives[0][0] if message.alternatives else ""
    return set(SUBJECT_CODE.findall(message.subject + message.body + html))


def keys_header(message) -> set[str]:
    return set(message.extra_headers["X-Registry-Keys"].split(", "))


class FailingBackend(BaseEmailBackend):
    """An SMTP server that refuses every message."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed by the mail relay")


FAILING_BACKEND = f"{__name__}.FailingBackend"


@pytest.fixture
def coord(site_a):
    return member("coord_a", site_a, Role.COORDINATOR)


@pytest.fixture
def inv(site_a):
    return member("inv_a", site_a, Role.INVESTIGATOR)


@pytest.fixture
def a1(study, site_a):
    return transplanted(study, site_a, "A-001")


@pytest.fixture
def a2(study, site_a):
    return transplanted(study, site_a, "A-002")


# Sweep -------------------------------------------------------------------------------------------------


def test_sweep_inserts_one_row_per_visit_stage_and_coordinator(site_a, a1, a2, coord):
    other = member("coord_a2", site_a, Role.COORDINATOR)

    report = sweep(sh(2, 10))

    m1 = {p.subject_code: visit(p, "M1").pk for p in (a1, a2)}
    assert report.inserted == 4
    assert rows() == sorted(("visit_reminder", m1[code], "due", user.email) for code in m1 for user in (coord, other))
    row = Notification.objects.get(object_id=m1["A-001"], recipient_email=coord.email)
    assert (row.state, row.site_id, row.recipient_user_id, row.attempts) == ("pending", site_a.pk, coord.pk, 0)


def test_second_sweep_inserts_nothing(a1, coord):
    sweep(sh(2, 10, hour=9))

    again = sweep(sh(2, 10, hour=15))

    assert again.inserted == 0
    assert Notification.objects.count() == 1


def test_a_missed_day_is_caught_up_with_one_row_for_todays_stage(a1, coord):
    sweep(sh(2, 8))

    sweep(sh(2, 18))  # no sweep ran from 02-09 to 02-17

    assert [stage for *_, stage, _ in rows()] == ["closing", "due"]


def test_withdrawn_patient_gets_no_reminder(study, site_a, a1, coord):
    withdrawn = transplanted(study, site_a, "A-002")
    with clock(sh(2, 2)):
        patient_withdraw(patient=withdrawn, on_date=D(2026, 2, 2), reason="moved abroad")
    # D7 closed before the withdrawal, so it stays open: the sweep must skip it because of the patient.
    Visit.objects.filter(patient=withdrawn, code="D7").update(outcome=fc.VisitOutcome.OPEN, actual_date=None)

    sweep(sh(2, 10))

    assert {oid for _, oid, *_ in rows()} == {visit(a1, "M1").pk}


def test_deceased_patient_gets_no_reminder(study, site_a, coord):
    deceased = transplanted(study, site_a, "A-003", completed=("BL",))
    with clock(sh(2, 2)):
        patient_record_death(patient=deceased, on_date=D(2026, 2, 1), cause="pneumonia")

    sweep(sh(2, 10))

    # No visit reminder (the edit check's query about the death, no grade 5 event, may be listed as overdue).
    assert rows(kind=nc.NotificationKind.VISIT_REMINDER) == []
    assert {row[0] for row in rows()} <= {nc.NotificationKind.QUERY_OVERDUE}


@pytest.mark.parametrize(
    ("preferences", "gets_reminder"),
    [
        ({"unsubscribed": True}, False),
        ({"paused_until": D(2026, 2, 10)}, False),  # paused through today (inclusive)
        ({"paused_until": D(2026, 2, 20)}, False),
        ({"paused_until": D(2026, 2, 9)}, True),  # the pause ended yesterday
        ({"language": "zh-hans"}, True),
    ],
)
def test_paused_or_unsubscribed_coordinator_gets_no_reminder(site_a, a1, preferences, gets_reminder):
    user = member("coord_pref", site_a, Role.COORDINATOR, **preferences)

    sweep(sh(2, 10))

    assert Notification.objects.filter(recipient_user=user).exists() is gets_reminder


def test_monitor_gets_no_reminder(site_a, a1):
    member("mon_a", site_a, Role.MONITOR)

    sweep(sh(2, 10))

    assert rows() == []


def test_coordinators_of_another_site_get_no_reminder(site_b, a1, coord):
    member("coord_b", site_b, Role.COORDINATOR)

    sweep(sh(2, 10))

    assert {email for *_, email in rows()} == {coord.email}


def test_overdue_reminders_go_to_coordinators_then_escalate_to_investigators(a1, coord, inv):
    m1 = visit(a1, "M1").pk  # window closed 2026-02-21

    for day in (22, 28):
        sweep(sh(2, day))
    sweep(sh(3, 1))
    sweep(sh(3, 21))
    assert rows() == [
        ("visit_reminder", m1, "overdue-1", coord.email),
        ("visit_reminder", m1, "overdue-2", coord.email),
        ("visit_reminder", m1, "overdue-4", coord.email),
    ]

    sweep(sh(3, 22))

    assert rows(kind="visit_escalation") == [("visit_escalation", m1, "escalated", inv.email)]
    assert rows(stage="escalated", recipient_email=coord.email) == []
    report = send(sh(3, 22))
    escalation = next(m for m in mail.outbox if m.to == [inv.email])
    assert "escalated" in escalation.subject and "A-001" in escalation.subject and "M1" in escalation.subject
    assert report.cancelled == 3  # the coordinator's older overdue reminders were superseded


def test_study_policy_changes_the_stages_the_sweep_inserts(study, a1, coord):
    ReminderPolicy.objects.filter(study=study).update(upcoming_days=10, send_hour=14)

    sweep(sh(1, 28))  # M1 opens on 02-07: 10 days ahead

    row = Notification.objects.get()
    assert (row.object_id, row.stage) == (visit(a1, "M1").pk, "upcoming")
    assert row.send_after == dt.datetime(2026, 1, 28, 6, 0, tzinfo=UTC)  # 14:00 in Nanjing


def test_send_after_is_eight_oclock_in_nanjing():
    site = Site(time_zone="Asia/Shanghai")

    assert send_after(site, D(2026, 2, 10), 8) == dt.datetime(2026, 2, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (D(2026, 3, 28), dt.datetime(2026, 3, 28, 8, 0, tzinfo=UTC)),  # GMT
        (D(2026, 3, 29), dt.datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),  # BST starts at 01:00 UTC that day
        (D(2026, 10, 24), dt.datetime(2026, 10, 24, 7, 0, tzinfo=UTC)),  # BST
        (D(2026, 10, 25), dt.datetime(2026, 10, 25, 8, 0, tzinfo=UTC)),  # GMT again from 01:00 UTC
    ],
)
def test_send_after_is_eight_oclock_in_london_across_dst(day, expected):
    assert send_after(Site(time_zone="Europe/London"), day, 8) == expected


@pytest.mark.parametrize(
    ("now", "completed", "code", "expected"),
    [
        (
            dt.datetime(2026, 3, 29, 12, 0, tzinfo=UTC),
            ("BL", "D7", "M1"),
            "M3",
            dt.datetime(2026, 3, 29, 7, 0, tzinfo=UTC),
        ),
        (
            dt.datetime(2026, 10, 25, 12, 0, tzinfo=UTC),
            ("BL", "D7", "M1", "M3", "M6"),
            "M9",
            dt.datetime(2026, 10, 25, 8, 0, tzinfo=UTC),
        ),
    ],
    ids=["london-dst-starts", "london-dst-ends"],
)
def test_sweep_rows_of_a_london_site_go_out_at_eight_local_across_dst(study, site_b, now, completed, code, expected):
    patient = transplanted(study, site_b, "B-001", completed=completed)
    member("coord_b", site_b, Role.COORDINATOR)

    sweep(now)

    row = Notification.objects.get()
    assert row.object_id == visit(patient, code).pk
    assert row.send_after == expected


def test_sweep_rows_of_a_nanjing_site_go_out_at_midnight_utc(a1, coord):
    sweep(sh(2, 10))

    assert set(Notification.objects.values_list("send_after", flat=True)) == {
        dt.datetime(2026, 2, 10, 0, 0, tzinfo=UTC)
    }


def test_sweep_uses_the_site_date_not_the_utc_date(a1, coord):
    sweep(dt.datetime(2026, 2, 6, 16, 30, tzinfo=UTC))  # 00:30 on 02-07 in Nanjing: M1 opens today there

    assert rows() == [("visit_reminder", visit(a1, "M1").pk, "due", coord.email)]


def test_dry_run_inserts_nothing_but_reports_the_rows(a1, a2, coord):
    report = sweep(sh(2, 10), dry_run=True)

    assert Notification.objects.count() == 0
    assert report.inserted == 2
    assert sorted(r.key for r in report.rows) == sorted(
        f"visit_reminder:{visit(p, 'M1').pk}:due:{coord.email}" for p in (a1, a2)
    )


def test_dry_run_after_a_sweep_reports_nothing_new_to_insert(a1, coord):
    sweep(sh(2, 10, hour=9))

    report = sweep(sh(2, 10, hour=11), dry_run=True)

    # "would insert N": rows already in the ledger would not be inserted again.
    assert report.inserted == 0


# Sending -----------------------------------------------------------------------------------------------


def test_one_digest_per_coordinator_lists_all_their_items(a1, a2, coord):
    sweep(sh(2, 10))

    report = send(sh(2, 10))

    assert (report.emails, report.sent) == (1, 2)
    [message] = mail.outbox
    assert message.to == [coord.email]
    assert message.subject == "MSCT registry: 2 items for today"
    assert "A-001 visit M1 (Month 1): window open until 2026-02-21" in message.body
    assert "A-002 visit M1 (Month 1): window open until 2026-02-21" in message.body
    assert keys_header(message) == {row.key for row in Notification.objects.all()}
    assert message.alternatives and message.alternatives[0][1] == "text/html"


def test_a_user_without_digest_gets_one_email_per_item(site_a, a1, a2):
    user = member("coord_single", site_a, Role.COORDINATOR, digest=False)
    sweep(sh(2, 10))

    report = send(sh(2, 10))

    assert (report.emails, report.sent) == (2, 2)
    assert sorted(m.subject for m in mail.outbox) == [
        "MSCT registry: visit M1 due – A-001",
        "MSCT registry: visit M1 due – A-002",
    ]
    for message in mail.outbox:
        assert message.to == [user.email]
        [key] = keys_header(message)
        code = "A-001" if "A-001" in message.subject else "A-002"
        assert subject_codes_in(message) == {code}
        assert key.startswith(f"visit_reminder:{Visit.objects.get(patient__subject_code=code, code='M1').pk}:due:")


def test_chinese_recipient_gets_the_chinese_email(site_a, a1, a2):
    member("coord_zh", site_a, Role.COORDINATOR, language="zh-hans")
    member("coord_zh_single", site_a, Role.COORDINATOR, language="zh-hans", digest=False)
    sweep(sh(2, 10))

    send(sh(2, 10))

    subjects = sorted(m.subject for m in mail.outbox)
    assert subjects == [
        "MSCT 登记系统：今日待办 2 项",
        "MSCT 登记系统：随访 M1已到期 – A-001",
        "MSCT 登记系统：随访 M1已到期 – A-002",
    ]
    digest = next(m for m in mail.outbox if "今日待办" in m.subject)
    assert "您今日的随访待办（共 2 项）" in digest.body
    assert "A-001 随访 M1（第1个月）：访视窗口开放至 2026-02-21" in digest.body
    assert "Month 1" not in digest.body
    assert "Your follow-up items" not in digest.body


def test_emails_name_subject_and_visit_codes_and_nothing_that_identifies_the_patient(
    study, site_a, site_b, a1, a2, coord
):
    transplanted(study, site_b, "B-001")  # another site's patient must not appear
    sweep(sh(2, 10))

    send(sh(2, 10))

    [message] = mail.outbox
    html = message.alternatives[0][0]
    assert subject_codes_in(message) == {"A-001", "A-002"}
    for text in (message.body, html):
        assert "M1" in text
        assert "B-001" not in text
        assert "1990" not in text  # the year of birth stays in the registry
        assert "2019-06-01" not in text  # so does the date of diagnosis
    assert keys_header(message) == {f"visit_reminder:{visit(p, 'M1').pk}:due:{coord.email}" for p in (a1, a2)}


def test_sent_rows_are_marked_sent_and_a_second_send_sends_nothing(a1, coord):
    sweep(sh(2, 10))
    now = sh(2, 10, hour=11)

    send(now)
    again = send(now + dt.timedelta(minutes=5))

    row = Notification.objects.get()
    assert (row.state, row.sent_at, row.attempts, row.last_error) == ("sent", now, 1, "")
    assert (again.emails, again.sent) == (0, 0)
    assert len(mail.outbox) == 1


def test_sent_rows_keep_the_message_id_of_their_email(a1, coord):
    sweep(sh(2, 10))

    send(sh(2, 10, hour=11))

    row = Notification.objects.get()
    [message] = mail.outbox
    assert row.message_id, "the ledger should record the Message-ID of the e-mail that carried the item"
    assert message.message()["Message-ID"] == row.message_id


def test_nothing_is_sent_before_the_local_sending_hour(a1, coord):
    early = dt.datetime(2026, 2, 9, 17, 0, tzinfo=UTC)  # 01:00 on 02-10 in Nanjing
    sweep(early)

    before = send(early)
    at_eight = send(dt.datetime(2026, 2, 10, 0, 0, tzinfo=UTC))

    assert before.emails == 0
    assert at_eight.emails == 1
    assert Notification.objects.get().state == "sent"


# Re-check at send time ---------------------------------------------------------------------------------


def test_visit_recorded_after_the_sweep_cancels_its_reminder(a1, coord):
    sweep(sh(2, 10, hour=7))
    with clock(sh(2, 10, hour=8)):
        visit_record(visit=visit(a1, "M1"), actual_date=D(2026, 2, 10), results={"WEIGHT": "55"})

    report = send(sh(2, 10, hour=9))

    row = Notification.objects.get()
    assert row.state == "cancelled"
    assert "no longer open" in row.last_error
    assert report.cancelled == 1 and mail.outbox == []


def test_patient_withdrawn_after_the_sweep_gets_no_reminder(a1, coord):
    sweep(sh(2, 10, hour=7))
    with clock(sh(2, 10, hour=8)):
        patient_withdraw(patient=a1, on_date=D(2026, 2, 10), reason="consent withdrawn")

    send(sh(2, 10, hour=9))

    row = Notification.objects.get()
    assert row.state == "cancelled" and row.last_error
    assert mail.outbox == []


def test_patient_withdrawn_after_the_sweep_cancels_an_overdue_reminder(a1, coord):
    # M1 closed on 02-21: withdrawal keeps it open (only a coordinator can say it was missed), so the
    # re-check must look at the patient as well.
    sweep(sh(2, 22, hour=7))
    with clock(sh(2, 22, hour=8)):
        patient_withdraw(patient=a1, on_date=D(2026, 2, 22), reason="consent withdrawn")

    send(sh(2, 22, hour=9))

    row = Notification.objects.get()
    assert visit(a1, "M1").outcome == fc.VisitOutcome.OPEN
    assert (row.stage, row.state, row.last_error) == ("overdue-1", "cancelled", "the patient is withdrawn")
    assert mail.outbox == []


def test_recipient_whose_membership_was_removed_gets_no_reminder(a1, coord):
    sweep(sh(2, 10, hour=7))
    Membership.objects.filter(user=coord).delete()

    send(sh(2, 10, hour=9))

    row = Notification.objects.get()
    assert row.state == "cancelled"
    assert "no longer receives" in row.last_error
    assert mail.outbox == []


def test_superseded_stage_is_cancelled_and_the_new_stage_sent(a1, coord):
    sweep(sh(2, 17))  # M1 due (closes 02-21)
    sweep(sh(2, 18))  # closing

    report = send(sh(2, 18))

    due, closing = (Notification.objects.get(stage=s) for s in ("due", "closing"))
    assert due.state == "cancelled" and "superseded" in due.last_error
    assert closing.state == "sent"
    assert (report.emails, report.sent, report.cancelled) == (1, 1, 1)
    [message] = mail.outbox
    assert "window closes 2026-02-21" in message.body
    assert keys_header(message) == {closing.key}


# Claims ------------------------------------------------------------------------------------------------


def _claimed(row: Notification, at: dt.datetime) -> None:
    Notification.objects.filter(pk=row.pk).update(
        state=nc.NotificationState.SENDING, claim_token=uuid.uuid4(), claimed_at=at, attempts=1
    )


def test_a_row_claimed_recently_is_not_taken_by_another_sender(a1, coord):
    sweep(sh(2, 10, hour=7))
    now = sh(2, 10, hour=9)
    _claimed(Notification.objects.get(), now - dt.timedelta(minutes=1))

    report = send(now)

    assert report.emails == 0 and mail.outbox == []
    assert Notification.objects.get().state == "sending"


def test_a_claim_older_than_the_timeout_is_taken_again(settings, a1, coord):
    settings.NOTIFICATION_CLAIM_TIMEOUT = 60
    sweep(sh(2, 10, hour=7))
    now = sh(2, 10, hour=9)
    _claimed(Notification.objects.get(), now - dt.timedelta(seconds=61))

    report = send(now)

    row = Notification.objects.get()
    assert report.emails == 1 and len(mail.outbox) == 1
    assert (row.state, row.attempts, row.claimed_at) == ("sent", 2, now)


def test_a_claim_within_a_custom_timeout_is_left_alone(settings, a1, coord):
    settings.NOTIFICATION_CLAIM_TIMEOUT = 3600
    sweep(sh(2, 10, hour=7))
    now = sh(2, 10, hour=9)
    _claimed(Notification.objects.get(), now - dt.timedelta(minutes=30))

    assert send(now).emails == 0


def test_two_claims_on_the_same_rows_the_second_gets_none(a1, a2, coord):
    sweep(sh(2, 10, hour=7))
    now = sh(2, 10, hour=9)

    with clock(now):
        first_token, first = claim(coord.email, now)
        second_token, second = claim(coord.email, now)

    assert len(first) == 2 and second == []
    assert first_token != second_token
    assert set(Notification.objects.values_list("state", "claim_token")) == {("sending", first_token)}


# Failures and resending --------------------------------------------------------------------------------


def test_smtp_failure_puts_the_row_back_with_backoff_and_the_error(settings, a1, coord):
    settings.EMAIL_BACKEND = FAILING_BACKEND
    sweep(sh(2, 10, hour=7))
    now = sh(2, 10, hour=9)

    report = send(now)

    row = Notification.objects.get()
    assert (report.emails, report.retried, report.failed) == (0, 1, 0)
    assert (row.state, row.attempts, row.claim_token) == ("pending", 1, None)
    assert row.send_after == now + backoff(1)
    assert "SMTPServerDisconnected" in row.last_error and "mail relay" in row.last_error
    assert send(now + dt.timedelta(seconds=30)).retried == 0  # not before the backoff is over


def test_temporary_failures_retry_for_a_day_then_the_row_fails_with_its_error_kept(settings, a1, coord):
    settings.EMAIL_BACKEND = FAILING_BACKEND
    sweep(sh(2, 10, hour=7))
    first = now = sh(2, 10, hour=9)

    attempts = 0
    while True:
        report = send(now)
        attempts += 1
        row = Notification.objects.get()
        assert row.attempts == attempts and row.first_attempt_at == first
        if row.state != "pending":
            break
        assert report.retried == 1
        assert row.send_after == min(now + backoff(attempts), first + dt.timedelta(hours=24))
        now = row.send_after

    assert (row.state, report.failed, row.failed_at) == ("failed", 1, first + dt.timedelta(hours=24))
    assert attempts > 5, "retried for a day, not a number of times"
    assert "SMTPServerDisconnected" in row.last_error and row.last_error.startswith("temporary")
    assert send(now + dt.timedelta(days=1)).emails == 0


def test_resend_queues_a_failed_row_again_and_it_is_sent(settings, a1, coord):
    sweep(sh(2, 10, hour=7))
    row = Notification.objects.get()
    Notification.objects.filter(pk=row.pk).update(state="failed", attempts=5, last_error="SMTP 554")
    later = sh(2, 10, hour=12)

    with clock(later):
        notification_resend(notification=row)
    row.refresh_from_db()
    assert (row.state, row.attempts, row.last_error, row.send_after) == ("pending", 0, "", later)

    assert send(later).emails == 1
    assert Notification.objects.get().state == "sent"


def test_resend_refuses_a_sent_row(a1, coord):
    sweep(sh(2, 10, hour=7))
    send(sh(2, 10, hour=9))

    with clock(sh(2, 10, hour=10)), pytest.raises(ValidationError) as excinfo:
        notification_resend(notification=Notification.objects.get())

    assert "state" in excinfo.value.message_dict
    assert Notification.objects.get().state == "sent"
    assert len(mail.outbox) == 1


def test_resend_refuses_a_row_that_no_longer_applies(a1, coord):
    sweep(sh(2, 10, hour=7))
    row = Notification.objects.get()
    Notification.objects.filter(pk=row.pk).update(state="failed", attempts=5)
    with clock(sh(2, 10, hour=8)):
        visit_record(visit=visit(a1, "M1"), actual_date=D(2026, 2, 10), results={"WEIGHT": "55"})

    with clock(sh(2, 10, hour=9)), pytest.raises(ValidationError) as excinfo:
        notification_resend(notification=row)

    assert "no longer open" in " ".join(excinfo.value.messages)
    assert Notification.objects.get().state == "failed"


# Expedited-report reminders ----------------------------------------------------------------------------


@pytest.fixture
def safety_addresses(study, site_a):
    Site.objects.filter(pk=site_a.pk).update(safety_email="safety@njdt.example")
    Study.objects.filter(pk=study.pk).update(safety_contact_email="pv@sponsor.example")
    return {"safety@njdt.example", "pv@sponsor.example"}


def record_ae(patient, **overrides) -> AdverseEvent:
    """A fatal SUSAR by default: aware 2026-03-02, initial report due 03-09, complete report due 03-17."""
    fields = {
        "term": "Acute respiratory distress",
        "category": fc.AECategory.OTHER,
        "onset_date": D(2026, 3, 1),
        "resolution_date": D(2026, 3, 1),
        "grade": fc.CTCAEGrade.DEATH,
        "serious_death": True,
        "outcome": fc.AEOutcome.FATAL,
        "relatedness": fc.Relatedness.POSSIBLE,
        "expected": False,
        "aware_date": D(2026, 3, 2),
    }
    fields.update(overrides)
    with clock(sh(3, 2, hour=12)):
        return ae_record(patient=patient, **fields)


def ae_sweep(now):
    with clock(now):
        return safety_reports_sweep(now=now)


def test_fatal_susar_warns_before_the_initial_report_is_due(a1, coord, inv, safety_addresses):
    ae = record_ae(a1)
    assert (ae.initial_report_due, ae.complete_report_due) == (D(2026, 3, 9), D(2026, 3, 17))

    assert ae_sweep(sh(3, 6)).inserted == 0
    ae_sweep(sh(3, 7))  # two days before the due date

    assert rows() == sorted(("ae_report", ae.pk, "initial-due-soon", email) for email in {inv.email, *safety_addresses})
    assert ae_sweep(sh(3, 9)).inserted == 0  # the same warning is not repeated
    send(sh(3, 7))
    assert sorted(m.to[0] for m in mail.outbox) == sorted({inv.email, *safety_addresses})
    for message in mail.outbox:
        assert message.subject == "MSCT registry: initial safety report due 2026-03-09 – A-001"
        assert subject_codes_in(message) == {"A-001"}


def test_late_initial_report_is_reminded_every_day(a1, inv, safety_addresses):
    ae = record_ae(a1)

    ae_sweep(sh(3, 10))
    ae_sweep(sh(3, 11))

    recipients = {inv.email, *safety_addresses}
    assert rows() == sorted(
        ("ae_report", ae.pk, stage, email)
        for stage in ("initial-late-2026-03-10", "initial-late-2026-03-11")
        for email in recipients
    )
    report = send(sh(3, 11))  # yesterday's unsent reminder gives way to today's
    assert (report.sent, report.cancelled) == (3, 3)
    assert all(m.subject == "MSCT registry: initial safety report LATE – A-001" for m in mail.outbox)
    assert set(Notification.objects.filter(state="sent").values_list("stage", flat=True)) == {"initial-late-2026-03-11"}


def test_complete_report_of_a_fatal_susar_is_warned_too(a1, inv, safety_addresses):
    ae = record_ae(a1)
    with clock(sh(3, 5)):
        ae_record_submission(ae=ae, report="initial", on_date=D(2026, 3, 5))

    ae_sweep(sh(3, 15))

    assert {stage for _, _, stage, _ in rows()} == {"complete-due-soon"}


def test_submitted_report_stops_the_reminders(a1, inv, safety_addresses):
    ae = record_ae(a1)
    ae_sweep(sh(3, 10))
    with clock(sh(3, 10, hour=11)):
        ae_record_submission(ae=ae, report="initial", on_date=D(2026, 3, 10))

    report = send(sh(3, 10, hour=12))
    ae_sweep(sh(3, 11))

    assert report.cancelled == 3 and mail.outbox == []
    assert set(Notification.objects.values_list("state", "last_error")) == {
        ("cancelled", "the initial report was submitted")
    }
    assert Notification.objects.count() == 3  # nothing new the next day


def test_due_soon_warning_is_not_sent_once_the_report_is_late(a1, inv, safety_addresses):
    ae = record_ae(a1)
    ae_sweep(sh(3, 7))  # "due 2026-03-09" warnings queued; the sender did not run until 03-10
    ae_sweep(sh(3, 10))

    send(sh(3, 10))

    assert set(Notification.objects.filter(stage="initial-due-soon").values_list("state", flat=True)) == {"cancelled"}
    assert sorted(m.subject for m in mail.outbox) == ["MSCT registry: initial safety report LATE – A-001"] * 3
    assert ae.initial_report_due == D(2026, 3, 9)


def test_event_no_longer_a_susar_cancels_its_report_reminder(a1, inv, safety_addresses):
    ae = record_ae(a1)
    ae_sweep(sh(3, 10))
    with clock(sh(3, 10, hour=11)):
        ae.relatedness = fc.Relatedness.UNRELATED
        ae = ae_save(ae=ae, reason="re-assessed: unrelated to MSCT")
    assert ae.initial_report_due is None

    report = send(sh(3, 10, hour=12))

    assert (report.emails, report.cancelled) == (0, 3)
    assert mail.outbox == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"expected": True},
        {"relatedness": fc.Relatedness.UNLIKELY},
        {
            "grade": fc.CTCAEGrade.MODERATE,
            "serious_death": False,
            "outcome": fc.AEOutcome.RECOVERED,
            "resolution_date": D(2026, 3, 2),
        },  # not serious
    ],
    ids=["expected", "unlikely-related", "not-serious"],
)
def test_non_susar_gets_no_report_reminder(a1, inv, safety_addresses, overrides):
    ae = record_ae(a1, **overrides)

    for day in (7, 10, 20):
        ae_sweep(sh(3, day))

    assert ae.initial_report_due is None
    assert rows() == []


def test_coordinators_do_not_receive_safety_report_reminders(a1, coord, inv, safety_addresses):
    record_ae(a1)

    ae_sweep(sh(3, 10))

    assert coord.email not in {email for *_, email in rows()}


# Command -----------------------------------------------------------------------------------------------


def test_send_reminders_dry_run_changes_nothing(a1, coord):
    with clock(sh(2, 10)):
        sweep(sh(2, 10, hour=7))  # one row already queued and due
        before = row_counts(Notification)
        call_command("send_reminders", dry_run=True, stdout=(out := io.StringIO()))
        after = row_counts(Notification)

    assert before == after
    assert Notification.objects.get().state == "pending"
    assert mail.outbox == []
    assert f"visit_reminder:{visit(a1, 'M1').pk}:due:{coord.email}: send" in out.getvalue()


def test_send_reminders_dry_run_on_an_empty_ledger_inserts_nothing(a1, coord):
    with clock(sh(2, 10)):
        call_command("send_reminders", dry_run=True, stdout=(out := io.StringIO()))

    assert Notification.objects.count() == 0 and mail.outbox == []
    assert f"visit_reminder:{visit(a1, 'M1').pk}:due:{coord.email}" in out.getvalue()


def test_send_reminders_inserts_and_sends(a1, a2, coord):
    with clock(sh(2, 10)):
        call_command("send_reminders", stdout=(out := io.StringIO()))

    assert Notification.objects.filter(state="sent").count() == 2
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [coord.email]
    assert "reminders inserted: 2" in out.getvalue()
