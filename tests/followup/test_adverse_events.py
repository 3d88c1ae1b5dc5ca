"""Adverse events (docs/clinical-rules.md, "Adverse events"): SUSAR detection, the expedited-reporting
clock, grade 5 deaths, infusion reactions and site scoping."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone

from followup import constants as c
from followup.constants import VisitOutcome
from followup.models import AdverseEvent, Visit
from followup.services import ae_record, ae_record_submission, ae_report_clock, ae_save
from patients.constants import PatientStatus
from tests.factories import make_clinical, make_patient, make_site, make_transplant, make_user

pytestmark = pytest.mark.django_db

AWARE = dt.date(2025, 5, 10)


@pytest.fixture
def clinical():
    return make_clinical()


def susar_fields(**overrides) -> dict:
    """A serious (hospitalisation), unexpected, possibly related event: a SUSAR that is not fatal."""
    fields = {
        "term": "pneumonia",
        "category": c.AECategory.INFECTION,
        "onset_date": dt.date(2025, 5, 8),
        "aware_date": AWARE,
        "grade": c.CTCAEGrade.SEVERE,
        "serious_hospitalisation": True,
        "relatedness": c.Relatedness.POSSIBLE,
        "expected": False,
    }
    fields.update(overrides)
    return fields


def fatal_fields(**overrides) -> dict:
    fields = {
        "term": "septic shock",
        "grade": c.CTCAEGrade.DEATH,
        "serious_death": True,
        "outcome": c.AEOutcome.FATAL,
        "resolution_date": dt.date(2025, 5, 12),
    }
    fields.update(overrides)
    return susar_fields(**fields)


def errors_of(excinfo) -> dict[str, str]:
    return {key: " ".join(value) for key, value in excinfo.value.message_dict.items()}


# SUSAR detection --------------------------------------------------------------------------------------


@pytest.mark.parametrize("relatedness", [c.Relatedness.POSSIBLE, c.Relatedness.PROBABLE, c.Relatedness.DEFINITE])
def test_serious_unexpected_at_least_possibly_related_event_is_a_susar(clinical, relatedness):
    ae = ae_record(patient=clinical.patient, **susar_fields(relatedness=relatedness))
    assert ae.serious and ae.is_susar


@pytest.mark.parametrize(
    "overrides",
    [
        {"expected": True},  # expected per the reference safety information
        {"relatedness": c.Relatedness.UNLIKELY},
        {"relatedness": c.Relatedness.UNRELATED},
        {"serious_hospitalisation": False},  # not serious (grade 3 alone is intensity, not seriousness)
    ],
    ids=["expected", "unlikely", "unrelated", "not_serious"],
)
def test_event_that_is_expected_unrelated_or_not_serious_is_no_susar_and_has_no_due_dates(clinical, overrides):
    ae = ae_record(patient=clinical.patient, **susar_fields(**overrides))
    assert not ae.is_susar
    assert (ae.initial_report_due, ae.complete_report_due) == (None, None)
    assert ae_report_clock(ae, today=AWARE) == []


@pytest.mark.parametrize(
    "criterion",
    [
        "serious_life_threatening",
        "serious_hospitalisation",
        "serious_disability",
        "serious_congenital_anomaly",
        "serious_other_important",
    ],
)
def test_any_seriousness_criterion_makes_the_event_serious(clinical, criterion):
    fields = susar_fields(serious_hospitalisation=False)
    fields[criterion] = True
    assert ae_record(patient=clinical.patient, **fields).is_susar


# Due dates --------------------------------------------------------------------------------------------


def test_fatal_susar_initial_report_due_in_7_days_and_complete_report_8_days_later(clinical):
    ae = ae_record(patient=clinical.patient, **fatal_fields())
    # aware 2025-05-10 (day 0) + 7 = 2025-05-17; + 8 more = 2025-05-25 (aware + 15)
    assert ae.initial_report_due == AWARE + dt.timedelta(days=7) == dt.date(2025, 5, 17)
    assert ae.complete_report_due == AWARE + dt.timedelta(days=7 + 8) == dt.date(2025, 5, 25)


def test_life_threatening_susar_has_the_same_clock_as_a_fatal_one(clinical):
    ae = ae_record(
        patient=clinical.patient,
        **susar_fields(grade=c.CTCAEGrade.LIFE_THREATENING, serious_life_threatening=True),
    )
    assert (ae.initial_report_due, ae.complete_report_due) == (dt.date(2025, 5, 17), dt.date(2025, 5, 25))


def test_other_susar_report_due_in_15_days_with_no_complete_report(clinical):
    ae = ae_record(patient=clinical.patient, **susar_fields())
    # aware 2025-05-10 + 15 = 2025-05-25
    assert ae.initial_report_due == dt.date(2025, 5, 25)
    assert ae.complete_report_due is None


def test_due_dates_are_counted_in_calendar_days_across_a_month_end(clinical):
    ae = ae_record(
        patient=clinical.patient, **susar_fields(onset_date=dt.date(2025, 1, 20), aware_date=dt.date(2025, 1, 25))
    )
    # 2025-01-25 + 15 = 2025-02-09
    assert ae.initial_report_due == dt.date(2025, 2, 9)


def test_changing_the_awareness_date_moves_the_due_dates(clinical):
    ae = ae_record(patient=clinical.patient, **susar_fields())
    ae.aware_date = dt.date(2025, 5, 9)
    ae = ae_save(ae=ae, reason="site was told a day earlier")
    assert ae.initial_report_due == dt.date(2025, 5, 24)


def test_event_that_stops_being_a_susar_loses_its_due_dates(clinical):
    ae = ae_record(patient=clinical.patient, **susar_fields())
    ae.relatedness = c.Relatedness.UNLIKELY
    ae = ae_save(ae=ae, reason="causality reassessed by the investigator")
    assert ae.initial_report_due is None


def test_changing_an_adverse_event_needs_a_reason(clinical):
    ae = ae_record(patient=clinical.patient, **susar_fields())
    ae.term = "lobar pneumonia"
    with pytest.raises(ValidationError) as excinfo:
        ae_save(ae=ae)
    assert "reason" in excinfo.value.message_dict


# The clock --------------------------------------------------------------------------------------------


def test_clock_of_a_fatal_susar_before_anything_is_submitted(clinical):
    ae = ae_record(patient=clinical.patient, **fatal_fields())
    clock = ae_report_clock(ae, today=dt.date(2025, 5, 12))
    # 2025-05-17 - 2025-05-12 = 5 days; 2025-05-25 - 2025-05-12 = 13 days
    assert [(r["report"], r["due"], r["state"], r["days_left"]) for r in clock] == [
        ("initial", dt.date(2025, 5, 17), "due", 5),
        ("complete", dt.date(2025, 5, 25), "due", 13),
    ]


@pytest.mark.parametrize(
    ("today", "state", "days_left"),
    [
        (dt.date(2025, 5, 10), "due", 15),  # day 0
        (dt.date(2025, 5, 25), "due", 0),  # the due date itself
        (dt.date(2025, 5, 26), "overdue", -1),  # one day late
        (dt.date(2025, 6, 4), "overdue", -10),
    ],
)
def test_clock_is_due_until_the_due_date_then_overdue(clinical, today, state, days_left):
    ae = ae_record(patient=clinical.patient, **susar_fields())
    [initial] = ae_report_clock(ae, today=today)
    assert (initial["state"], initial["days_left"]) == (state, days_left)


@pytest.mark.parametrize(
    ("submitted", "state"),
    [
        (dt.date(2025, 5, 20), "submitted on time"),
        (dt.date(2025, 5, 25), "submitted on time"),  # on the due date
        (dt.date(2025, 5, 26), "submitted late"),
    ],
)
def test_submission_is_on_time_up_to_the_due_date(clinical, submitted, state):
    ae = ae_record(patient=clinical.patient, **susar_fields())
    ae = ae_record_submission(ae=ae, report="initial", on_date=submitted)
    assert ae.initial_report_submitted_on == submitted
    [initial] = ae_report_clock(ae, today=dt.date(2025, 6, 30))
    assert initial["state"] == state
    assert initial["submitted_on"] == submitted


def test_fatal_susar_with_initial_submitted_keeps_the_complete_report_running(clinical):
    ae = ae_record(patient=clinical.patient, **fatal_fields())
    ae = ae_record_submission(ae=ae, report="initial", on_date=dt.date(2025, 5, 16))
    clock = {r["report"]: r for r in ae_report_clock(ae, today=dt.date(2025, 5, 27))}
    assert clock["initial"]["state"] == "submitted on time"
    assert (clock["complete"]["state"], clock["complete"]["days_left"]) == ("overdue", -2)  # due 05-25
    ae = ae_record_submission(ae=ae, report="complete", on_date=dt.date(2025, 5, 27))
    clock = {r["report"]: r for r in ae_report_clock(ae, today=dt.date(2025, 5, 27))}
    assert clock["complete"]["state"] == "submitted late"


def test_submission_is_kept_in_the_history_with_its_reason(clinical):
    ae = ae_record(patient=clinical.patient, **susar_fields())
    ae_record_submission(ae=ae, report="initial", on_date=dt.date(2025, 5, 20))
    latest = AdverseEvent.history.filter(id=ae.pk).order_by("-history_date", "-history_id").first()
    assert latest.history_change_reason == "initial report submitted on 2025-05-20"


def test_complete_report_of_a_non_fatal_susar_is_refused(clinical):
    ae = ae_record(patient=clinical.patient, **susar_fields())
    with pytest.raises(ValidationError) as excinfo:
        ae_record_submission(ae=ae, report="complete", on_date=dt.date(2025, 5, 20))
    assert "report" in excinfo.value.message_dict


def test_unknown_report_kind_is_refused(clinical):
    ae = ae_record(patient=clinical.patient, **susar_fields())
    with pytest.raises(ValidationError) as excinfo:
        ae_record_submission(ae=ae, report="final", on_date=dt.date(2025, 5, 20))
    assert "report" in excinfo.value.message_dict


def test_report_before_awareness_is_refused(clinical):
    ae = ae_record(patient=clinical.patient, **susar_fields())
    with pytest.raises(ValidationError) as excinfo:
        ae_record_submission(ae=ae, report="initial", on_date=dt.date(2025, 5, 9))
    assert "initial_report_submitted_on" in excinfo.value.message_dict
    ae.refresh_from_db()
    assert ae.initial_report_submitted_on is None


# Grade 5 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "field"),
    [
        ({"serious_death": False}, "serious_death"),
        ({"outcome": c.AEOutcome.NOT_RECOVERED}, "outcome"),
        ({"resolution_date": None}, "resolution_date"),
    ],
)
def test_grade_5_needs_death_criterion_fatal_outcome_and_date_of_death(clinical, missing, field):
    fields = fatal_fields()
    fields.update(missing)
    with pytest.raises(ValidationError) as excinfo:
        ae_record(patient=clinical.patient, **fields)
    assert field in excinfo.value.message_dict
    assert not AdverseEvent.objects.exists()
    clinical.patient.refresh_from_db()
    assert clinical.patient.status == PatientStatus.ENROLLED


def test_grade_5_with_everything_missing_names_each_field(clinical):
    fields = fatal_fields(serious_death=False, outcome=c.AEOutcome.UNKNOWN, resolution_date=None)
    with pytest.raises(ValidationError) as excinfo:
        ae_record(patient=clinical.patient, **fields)
    assert {"serious_death", "outcome", "resolution_date"} <= set(excinfo.value.message_dict)


def test_death_below_grade_5_is_refused(clinical):
    fields = fatal_fields(grade=c.CTCAEGrade.LIFE_THREATENING)
    with pytest.raises(ValidationError) as excinfo:
        ae_record(patient=clinical.patient, **fields)
    assert "grade" in excinfo.value.message_dict


def test_grade_5_records_the_death_and_takes_future_visits_out(clinical):
    death = dt.date(2025, 7, 1)
    ae_record(
        patient=clinical.patient,
        **fatal_fields(onset_date=dt.date(2025, 6, 25), aware_date=dt.date(2025, 7, 1), resolution_date=death),
    )
    patient = clinical.refresh().patient
    assert patient.status == PatientStatus.DECEASED
    assert patient.status_date == death
    assert "septic shock" in patient.status_reason
    outcomes = dict(Visit.objects.filter(patient=patient).values_list("code", "outcome"))
    # M3's window closed on 2025-06-16, before the death: it stays for a coordinator to settle.
    for code in ("BL", "D7", "M1", "M3"):
        assert outcomes[code] == VisitOutcome.OPEN, code
    # M6 (window 2025-08-18 .. 09-15) and every later visit: not required.
    for code in ("M6", "M9", "M12", "M18", "M24", "M36", "M48", "M60"):
        assert outcomes[code] == VisitOutcome.NOT_REQUIRED, code


def test_grade_5_susar_of_a_patient_already_deceased_does_not_record_the_death_twice(clinical):
    ae_record(patient=clinical.patient, **fatal_fields())
    ae_record(patient=clinical.patient, **fatal_fields(term="multi-organ failure"))
    assert AdverseEvent.objects.filter(patient=clinical.patient).count() == 2
    clinical.refresh()
    assert clinical.patient.status_date == dt.date(2025, 5, 12)


# Infusion reactions and other checks ------------------------------------------------------------------


def infusion_reaction(transplant=None, **overrides):
    fields = {
        "term": "transient fever",
        "category": c.AECategory.INFUSION_REACTION,
        "onset_date": dt.date(2025, 3, 3),
        "aware_date": dt.date(2025, 3, 3),
        "grade": c.CTCAEGrade.MILD,
        "relatedness": c.Relatedness.PROBABLE,
        "expected": True,
        "transplant": transplant,
    }
    fields.update(overrides)
    return fields


def test_infusion_reaction_needs_the_infusion(clinical):
    with pytest.raises(ValidationError) as excinfo:
        ae_record(patient=clinical.patient, **infusion_reaction())
    assert "transplant" in excinfo.value.message_dict
    ae = ae_record(patient=clinical.patient, **infusion_reaction(clinical.transplant))
    assert ae.transplant == clinical.transplant


def test_infusion_reaction_linked_to_another_patients_infusion_is_refused(clinical):
    other = make_patient(clinical.study, clinical.site)
    other_infusion = make_transplant(other, clinical.lot)
    with pytest.raises(ValidationError) as excinfo:
        ae_record(patient=clinical.patient, **infusion_reaction(other_infusion))
    assert "another patient" in errors_of(excinfo)["transplant"]
    assert not AdverseEvent.objects.exists()


def test_infusion_related_event_cannot_start_before_the_infusion(clinical):
    with pytest.raises(ValidationError) as excinfo:
        ae_record(
            patient=clinical.patient,
            **infusion_reaction(clinical.transplant, onset_date=dt.date(2025, 3, 2), aware_date=dt.date(2025, 3, 2)),
        )
    assert "onset_date" in excinfo.value.message_dict


def test_awareness_before_onset_is_refused(clinical):
    with pytest.raises(ValidationError):
        ae_record(patient=clinical.patient, **susar_fields(aware_date=dt.date(2025, 5, 7)))
    assert not AdverseEvent.objects.exists()


def test_dates_in_the_future_are_refused(clinical):
    future = timezone.now().date() + dt.timedelta(days=30)
    with pytest.raises(ValidationError) as excinfo:
        ae_record(patient=clinical.patient, **susar_fields(onset_date=future, aware_date=future))
    assert {"onset_date", "aware_date"} <= set(excinfo.value.message_dict)


# Site scoping -----------------------------------------------------------------------------------------


def test_coordinator_of_another_site_cannot_record_an_adverse_event_for_the_patient(clinical):
    elsewhere = make_site(time_zone="Europe/London", country="GB")
    outsider = make_user("coord_other_site", elsewhere)
    with pytest.raises(ValidationError) as excinfo:
        ae_record(patient=clinical.patient, actor=outsider, **susar_fields())
    assert "patient" in excinfo.value.message_dict
    assert not AdverseEvent.objects.exists()


def test_monitor_of_the_site_cannot_record_an_adverse_event(clinical):
    monitor = make_user("monitor_here", clinical.site, role="monitor")
    with pytest.raises(ValidationError):
        ae_record(patient=clinical.patient, actor=monitor, **susar_fields())
    assert not AdverseEvent.objects.exists()


def test_coordinator_of_the_site_records_an_adverse_event(clinical):
    coordinator = make_user("coord_same_site", clinical.site)
    ae = ae_record(patient=clinical.patient, actor=coordinator, **susar_fields())
    assert ae.pk and ae.initial_report_due == dt.date(2025, 5, 25)


def test_coordinator_of_another_site_cannot_record_a_submission(clinical):
    ae = ae_record(patient=clinical.patient, **susar_fields())
    outsider = make_user("coord_other", make_site(time_zone="UTC", country="GB"))
    with pytest.raises(ValidationError):
        ae_record_submission(ae=ae, report="initial", on_date=dt.date(2025, 5, 20), actor=outsider)
    ae.refresh_from_db()
    assert ae.initial_report_submitted_on is None


def test_grade_5_on_the_sites_today_is_accepted_when_utc_is_still_on_the_day_before():
    # 2025-07-01 17:00 UTC is 2025-07-02 01:00 in Nanjing: a death on 07-02 is today at the site, not future.
    with time_machine.travel(dt.datetime(2025, 7, 1, 17, 0, tzinfo=dt.UTC), tick=False):
        clinical = make_clinical(time_zone="Asia/Shanghai")
        died = dt.date(2025, 7, 2)
        ae_record(
            patient=clinical.patient,
            **fatal_fields(onset_date=dt.date(2025, 7, 1), aware_date=died, resolution_date=died),
        )
        patient = clinical.refresh().patient
        assert (patient.status, patient.status_date) == (PatientStatus.DECEASED, died)


def test_an_event_and_an_infusion_are_named_in_the_readers_language(clinical):
    """Their names head the event's page, its history and the messages, and fill the infusion pick list."""
    from django.utils import translation

    ae = ae_record(patient=clinical.patient, **susar_fields())
    code = clinical.patient.subject_code
    assert (str(ae), str(clinical.transplant)) == (f"{code}: pneumonia (grade 3)", f"{code} infusion 1")
    with translation.override("zh-hans"):
        assert (str(ae), str(clinical.transplant)) == (f"{code}：pneumonia（3 级）", f"{code} 第 1 次输注")
