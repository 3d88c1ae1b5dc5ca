"""Safety signals: lab findings and the yearly malignancy question, raised once, reviewed by a person, and
announced once to the site's investigators.

Reference patient (tests.factories defaults): site in Nanjing (Asia/Shanghai), day 0
2025-03-03, windows BL 02-17..03-03, M1 03-26..04-09, M3 05-19..06-16, M6 08-18..09-15. Visits are recorded
with the wall clock at SETUP (2025-10-01, after all of them); sweeps and sends get an explicit `now`.
"""

from __future__ import annotations

import datetime as dt
import io
import zoneinfo

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import call_command

from followup import constants as fc
from followup.models import AdverseEvent, SafetySignal
from followup.safety import safety_sweep, signal_accept, signal_dismiss
from followup.services import ae_record, visit_record
from notifications.ledger import notifications_send_due, signals_notify_sweep
from notifications.models import Notification
from patients.services import patient_record_death, patient_withdraw
from registry.constants import Role
from tests.factories import make_clinical, make_site, make_user
from tests.helpers import row_counts

pytestmark = pytest.mark.django_db

D = dt.date
UTC = dt.UTC
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
SETUP = dt.datetime(2025, 10, 1, 12, 0, tzinfo=SHANGHAI)
VISIT_DAYS = {"BL": D(2025, 3, 2), "M1": D(2025, 4, 2), "M3": D(2025, 6, 2), "M6": D(2025, 9, 1)}


def clock(now: dt.datetime):
    return time_machine.travel(now, tick=False)


def sh(year: int, month: int, day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(year, month, day, hour, 0, tzinfo=SHANGHAI)


def member(username: str, site, role: str):
    user = make_user(username, site, role=role)
    user.email = f"{username}@registry.example"
    user.save(update_fields=["email"])
    return user


def record(clinical, code: str, **results):
    with clock(SETUP):
        return visit_record(visit=clinical.visit(code), actual_date=VISIT_DAYS[code], results=results)


def sweep(now: dt.datetime = SETUP, **kwargs):
    with clock(now):
        return safety_sweep(now=now, **kwargs)


def notify_and_send(now: dt.datetime = SETUP):
    with clock(now):
        signals_notify_sweep(now=now)
        return notifications_send_due(now=now)


def signals(**filters) -> list[tuple[str, str | None]]:
    return sorted(
        (kind, code or "") for kind, code in SafetySignal.objects.filter(**filters).values_list("kind", "visit__code")
    )


@pytest.fixture
def clinical():
    """The reference patient in a study whose safety checks already ran once (before its data): what a
    sweep finds is then open for review, not recorded as reviewed at import."""
    with clock(SETUP):
        clinical = make_clinical()
        safety_sweep(now=SETUP)
        return clinical


@pytest.fixture
def inv(clinical):
    return member("inv_a", clinical.site, Role.INVESTIGATOR)


@pytest.fixture
def coord(clinical):
    return member("coord_a", clinical.site, Role.COORDINATOR)


@pytest.fixture
def platelets_signal(clinical):
    record(clinical, "BL", PLT=210)
    record(clinical, "M1", PLT=90)
    sweep()
    return SafetySignal.objects.get()


def ae_fields(**overrides) -> dict:
    fields = {
        "term": "Thrombocytopenia",
        "category": fc.AECategory.CYTOPENIA,
        "grade": fc.CTCAEGrade.MODERATE,
        "relatedness": fc.Relatedness.UNLIKELY,
        "expected": True,
        "onset_date": VISIT_DAYS["M1"],
        "aware_date": VISIT_DAYS["M1"],
    }
    fields.update(overrides)
    return fields


# Lab findings ------------------------------------------------------------------------------------------


def test_creatinine_at_one_and_a_half_times_baseline_raises_one_signal(clinical):
    record(clinical, "BL", CREAT=70)
    record(clinical, "M1", CREAT="104.9")  # 1.499 x baseline: not yet
    record(clinical, "M3", CREAT=105)  # exactly 1.5 x baseline

    report = sweep()

    assert report.raised == 1
    signal = SafetySignal.objects.get()
    assert (signal.kind, signal.visit, signal.patient, signal.status) == (
        fc.SignalKind.CREATININE_RISE,
        clinical.visit("M3"),
        clinical.patient,
        fc.SignalStatus.OPEN,
    )
    assert "105" in signal.detail and "70" in signal.detail
    assert AdverseEvent.objects.count() == 0  # a signal is never an AE by itself


def test_creatinine_in_mg_per_dl_is_compared_in_canonical_units(clinical):
    record(clinical, "BL", CREAT=(80, "umol/L"))
    record(clinical, "M1", CREAT=("1.4", "mg/dL"))  # 123.76 umol/L = 1.55 x baseline

    sweep()

    assert signals() == [("creatinine_rise", "M1")]


def test_low_platelets_and_white_cells_raise_cytopenia_signals(clinical):
    record(clinical, "BL", PLT=210, WBC="6.1")
    record(clinical, "M1", PLT=90, WBC="2.5")
    record(clinical, "M3", PLT=100, WBC="3.0")  # on the thresholds: not below them

    sweep()

    assert signals() == [("leukopenia", "M1"), ("thrombocytopenia", "M1")]
    assert "Platelets 90" in SafetySignal.objects.get(kind="thrombocytopenia").detail
    assert "White cells 2.5" in SafetySignal.objects.get(kind="leukopenia").detail


def test_proteinuria_doubling_since_the_previous_visit_raises_a_signal(clinical):
    record(clinical, "BL", PROT24H="1.0")
    record(clinical, "M1", PROT24H="2.5")  # 2.5 x the previous (BL)
    record(clinical, "M3", PROT24H="4.0")  # 4 x baseline, but only 1.6 x the previous visit
    record(clinical, "M6", PROT24H=(8000, "mg/24h"))  # 8 g/24h: 2 x the previous visit

    sweep()

    assert signals() == [("proteinuria_doubling", "M1"), ("proteinuria_doubling", "M6")]


def test_sledai_flare_raises_a_signal(clinical):
    record(clinical, "BL", SLEDAI2K=10)
    record(clinical, "M1", SLEDAI2K=4)
    record(clinical, "M3", SLEDAI2K=6)  # a rise of 2: no flare
    record(clinical, "M6", SLEDAI2K=9)  # a rise of 3: mild/moderate flare

    sweep()

    assert signals() == [("sledai_flare", "M6")]
    assert "SLEDAI-2K 9" in SafetySignal.objects.get().detail


def test_second_sweep_raises_nothing(clinical):
    record(clinical, "BL", CREAT=70, PLT=210, PROT24H="1.0", SLEDAI2K=4)
    record(clinical, "M1", CREAT=120, PLT=80, WBC="2.0", PROT24H="2.2", SLEDAI2K=10)
    first = sweep()

    again = sweep(SETUP + dt.timedelta(days=1))

    assert first.raised == 5
    assert (again.findings, again.raised) == (5, 0)
    assert SafetySignal.objects.count() == 5


def test_dry_run_sweep_raises_nothing(clinical):
    record(clinical, "BL", PLT=210)
    record(clinical, "M1", PLT=90)

    report = sweep(dry_run=True)

    assert report.raised == 1
    assert SafetySignal.objects.count() == 0


# Yearly malignancy question ----------------------------------------------------------------------------


def malignancy_keys() -> list[str]:
    return sorted(SafetySignal.objects.filter(kind="malignancy_check").values_list("dedupe_key", flat=True))


def test_malignancy_question_comes_once_per_anniversary_of_day_zero(clinical):
    key = f"malignancy_check:patient:{clinical.patient.pk}:year:"

    sweep(sh(2026, 3, 2))
    assert malignancy_keys() == []
    sweep(sh(2026, 3, 3))
    sweep(sh(2026, 3, 4))
    sweep(sh(2026, 9, 1))
    assert malignancy_keys() == [f"{key}1"]
    sweep(sh(2027, 3, 3))
    assert malignancy_keys() == [f"{key}1", f"{key}2"]
    assert "Year 2" in SafetySignal.objects.get(dedupe_key=f"{key}2").detail


def test_malignancy_question_follows_the_site_date(clinical):
    sweep(dt.datetime(2026, 3, 2, 15, 59, tzinfo=UTC))  # 23:59 on 03-02 in Nanjing
    assert malignancy_keys() == []

    sweep(dt.datetime(2026, 3, 2, 16, 0, tzinfo=UTC))  # 00:00 on 03-03 in Nanjing

    assert len(malignancy_keys()) == 1


def test_malignancy_question_waits_for_the_anniversary_across_a_leap_day(clinical):
    sweep(sh(2027, 3, 3))  # year 2

    sweep(sh(2028, 3, 2))  # 1095 days after day 0, but the third anniversary is 2028-03-03 (2028-02-29 between)

    assert malignancy_keys() == [f"malignancy_check:patient:{clinical.patient.pk}:year:2"]


@pytest.mark.parametrize("leaves", ["withdrawn", "deceased"])
def test_malignancy_question_is_not_asked_for_patients_out_of_follow_up(clinical, leaves):
    with clock(SETUP):
        if leaves == "withdrawn":
            patient_withdraw(patient=clinical.patient, on_date=D(2025, 9, 20), reason="moved abroad")
        else:
            patient_record_death(patient=clinical.patient, on_date=D(2025, 9, 20), cause="pneumonia")

    sweep(sh(2026, 3, 3))

    assert malignancy_keys() == []


# Review ------------------------------------------------------------------------------------------------


def test_dismissing_a_signal_needs_a_reason(platelets_signal, inv):
    with clock(SETUP), pytest.raises(ValidationError) as excinfo:
        signal_dismiss(signal=platelets_signal, reason="   ", actor=inv)

    assert "review_reason" in excinfo.value.message_dict
    platelets_signal.refresh_from_db()
    assert platelets_signal.status == fc.SignalStatus.OPEN


def test_dismissed_signal_keeps_the_reason_and_the_reviewer(platelets_signal, inv):
    with clock(SETUP):
        signal_dismiss(signal=platelets_signal, reason="clumped sample; repeat count 180", actor=inv)

    platelets_signal.refresh_from_db()
    assert (platelets_signal.status, platelets_signal.review_reason, platelets_signal.reviewed_by) == (
        fc.SignalStatus.DISMISSED,
        "clumped sample; repeat count 180",
        inv,
    )
    assert platelets_signal.reviewed_at == SETUP
    assert platelets_signal.adverse_event is None


def test_answering_the_malignancy_question_marks_it_answered(clinical, inv):
    sweep(sh(2026, 3, 3))
    question = SafetySignal.objects.get(kind="malignancy_check")

    with clock(sh(2026, 3, 4)):
        signal_dismiss(signal=question, reason="no malignancy at yearly review", actor=inv)

    question.refresh_from_db()
    assert question.status == fc.SignalStatus.ANSWERED


def test_accepting_a_signal_records_the_adverse_event_and_links_it(platelets_signal, inv):
    with clock(SETUP):
        signal_accept(signal=platelets_signal, actor=inv, description="confirmed on repeat", **ae_fields())

    platelets_signal.refresh_from_db()
    ae = AdverseEvent.objects.get()
    assert platelets_signal.status == fc.SignalStatus.ACCEPTED
    assert platelets_signal.adverse_event == ae
    assert platelets_signal.reviewed_by == inv
    assert (ae.patient, ae.term, ae.grade, ae.description) == (
        platelets_signal.patient,
        "Thrombocytopenia",
        2,
        "confirmed on repeat",
    )


def test_accepting_a_signal_applies_the_adverse_event_rules(platelets_signal, inv):
    # Grade 5 without the death criterion, the fatal outcome and the date of death is refused by ae_save.
    with clock(SETUP), pytest.raises(ValidationError) as excinfo:
        signal_accept(signal=platelets_signal, actor=inv, **ae_fields(grade=fc.CTCAEGrade.DEATH))

    assert {"serious_death", "outcome", "resolution_date"} <= set(excinfo.value.message_dict)
    platelets_signal.refresh_from_db()
    assert platelets_signal.status == fc.SignalStatus.OPEN and platelets_signal.adverse_event is None
    assert AdverseEvent.objects.count() == 0


def test_accepting_a_signal_with_a_future_onset_is_refused(platelets_signal, inv):
    with clock(SETUP), pytest.raises(ValidationError) as excinfo:
        signal_accept(
            signal=platelets_signal, actor=inv, **ae_fields(onset_date=D(2025, 12, 1), aware_date=D(2025, 12, 1))
        )

    assert "onset_date" in excinfo.value.message_dict
    assert AdverseEvent.objects.count() == 0


@pytest.mark.parametrize("first", ["dismiss", "accept"])
def test_a_reviewed_signal_cannot_be_reviewed_again(platelets_signal, inv, first):
    with clock(SETUP):
        if first == "dismiss":
            signal_dismiss(signal=platelets_signal, reason="lab error", actor=inv)
        else:
            signal_accept(signal=platelets_signal, actor=inv, **ae_fields())

        for review in (
            lambda: signal_dismiss(signal=platelets_signal, reason="second opinion", actor=inv),
            lambda: signal_accept(signal=platelets_signal, actor=inv, **ae_fields()),
        ):
            with pytest.raises(ValidationError) as excinfo:
                review()
            assert "already reviewed" in excinfo.value.message_dict["status"][0]

    assert AdverseEvent.objects.count() == (1 if first == "accept" else 0)


def test_only_writers_of_the_signals_site_can_review_it(clinical, platelets_signal):
    other_site = make_site()
    outsider = member("coord_other", other_site, Role.COORDINATOR)
    monitor = member("monitor_a", clinical.site, Role.MONITOR)

    for actor in (outsider, monitor):
        with clock(SETUP), pytest.raises(ValidationError):
            signal_dismiss(signal=platelets_signal, reason="not mine", actor=actor)

    platelets_signal.refresh_from_db()
    assert platelets_signal.status == fc.SignalStatus.OPEN


# Notices to investigators ------------------------------------------------------------------------------


def test_signals_notify_investigators_once(platelets_signal, inv, coord):
    with clock(SETUP):
        first = signals_notify_sweep(now=SETUP)
        again = signals_notify_sweep(now=SETUP + dt.timedelta(hours=1))

    assert (first.inserted, again.inserted) == (1, 0)
    row = Notification.objects.get()
    assert (row.kind, row.object_id, row.stage, row.recipient_email) == (
        "safety_signal",
        platelets_signal.pk,
        "raised",
        inv.email,
    )

    report = notify_and_send(SETUP + dt.timedelta(hours=2))

    assert report.emails == 1
    [message] = mail.outbox
    assert message.to == [inv.email]
    assert message.subject == f"MSCT registry: safety signal to review – {platelets_signal.patient.subject_code}"
    assert "Platelets 90 x 10^9/L at M1" in message.body
    assert notify_and_send(SETUP + dt.timedelta(days=1)).emails == 0


def test_a_reviewed_signals_pending_notice_is_cancelled_at_send(platelets_signal, inv):
    with clock(SETUP):
        signals_notify_sweep(now=SETUP)
        signal_dismiss(signal=platelets_signal, reason="lab error", actor=inv)
        report = notifications_send_due(now=SETUP)

    row = Notification.objects.get()
    assert (row.state, row.last_error) == ("cancelled", "the signal was reviewed")
    assert report.cancelled == 1 and mail.outbox == []


def test_a_reviewed_signal_is_not_announced(platelets_signal, inv):
    with clock(SETUP):
        signal_dismiss(signal=platelets_signal, reason="lab error", actor=inv)

    report = notify_and_send()

    assert Notification.objects.count() == 0 and report.emails == 0


# Command -----------------------------------------------------------------------------------------------


@pytest.fixture
def findings_and_late_report(clinical, inv):
    """A low platelet count at M1 and a life-threatening SUSAR aware 2025-09-01: initial report due 09-08,
    complete report due 09-16, both late on 2025-10-01."""
    record(clinical, "BL", PLT=210)
    record(clinical, "M1", PLT=90)
    with clock(SETUP):
        ae_record(
            patient=clinical.patient,
            **ae_fields(
                term="Anaphylaxis",
                category=fc.AECategory.OTHER,
                grade=fc.CTCAEGrade.LIFE_THREATENING,
                serious_life_threatening=True,
                relatedness=fc.Relatedness.POSSIBLE,
                expected=False,
                onset_date=D(2025, 9, 1),
                aware_date=D(2025, 9, 1),
            ),
        )
    return clinical


def test_run_safety_checks_dry_run_changes_nothing(findings_and_late_report):
    before = row_counts(SafetySignal, Notification, AdverseEvent)

    with clock(SETUP):
        call_command("run_safety_checks", dry_run=True, stdout=(out := io.StringIO()))

    assert row_counts(SafetySignal, Notification, AdverseEvent) == before
    assert mail.outbox == []
    assert "would raise 1 new signal(s)" in out.getvalue()
    assert "initial-late-2025-10-01" in out.getvalue() and "complete-late-2025-10-01" in out.getvalue()


def test_run_safety_checks_raises_queues_and_sends(findings_and_late_report, inv):
    with clock(SETUP):
        call_command("run_safety_checks", stdout=io.StringIO())

    assert signals() == [("thrombocytopenia", "M1")]
    assert sorted(Notification.objects.values_list("kind", "stage", "state")) == [
        ("ae_report", "complete-late-2025-10-01", "sent"),
        ("ae_report", "initial-late-2025-10-01", "sent"),
        ("safety_signal", "raised", "sent"),
    ]
    assert sorted(m.subject.split(" – ")[0] for m in mail.outbox) == [
        "MSCT registry: complete safety report LATE",
        "MSCT registry: initial safety report LATE",
        "MSCT registry: safety signal to review",
    ]
    assert all(m.to == [inv.email] for m in mail.outbox)

    with clock(SETUP + dt.timedelta(hours=1)):
        call_command("run_safety_checks", stdout=io.StringIO())
    assert SafetySignal.objects.count() == 1 and len(mail.outbox) == 3
