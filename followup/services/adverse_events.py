"""Adverse events and the expedited-reporting clock (docs/clinical-rules.md)."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext

from core.signals import changed, changing
from followup import constants as c
from followup.models import AdverseEvent, MedDRATerm
from followup.services.coding import meddra_apply, meddra_current_release
from followup.states import site_today
from patients.constants import PatientStatus
from patients.models import Patient
from patients.services import day_zero, local_date, patient_record_death
from registry.constants import Role
from registry.models import Membership
from registry.services import ensure_can_write, full_clean_plain, participation_check

# Adverse events ----------------------------------------------------------------------------------------


def ae_due_dates(ae: AdverseEvent) -> tuple[dt.date | None, dt.date | None]:
    """Expedited-report due dates of a SUSAR, counted in calendar days from awareness (day 0)."""
    if not ae.is_susar:
        return None, None
    if ae.fatal_or_life_threatening:
        initial = ae.aware_date + dt.timedelta(days=c.FATAL_INITIAL_REPORT_DAYS)
        return initial, initial + dt.timedelta(days=c.FATAL_COMPLETE_REPORT_EXTRA_DAYS)
    return ae.aware_date + dt.timedelta(days=c.OTHER_REPORT_DAYS), None


def _check_ae(ae: AdverseEvent) -> None:
    errors: dict[str, str] = {}
    patient = Patient.objects.select_related("site").get(pk=ae.patient_id)  # as stored: its status now
    today = site_today(patient.site)
    for name in (
        "onset_date",
        "aware_date",
        "resolution_date",
        "initial_report_submitted_on",
        "complete_report_submitted_on",
    ):
        value = getattr(ae, name)
        if value and value > today:
            errors[name] = "This date cannot be in the future."
    onset = ae.onset_date
    if onset and patient.consent_date and onset < patient.consent_date and "onset_date" not in errors:
        errors["onset_date"] = (
            f"{onset.isoformat()} is before patient {patient.subject_code} consented "
            f"({patient.consent_date.isoformat()}); an event before consent is medical history, not an adverse "
            "event of the study."
        )
    if onset and patient.status == PatientStatus.DECEASED and patient.status_date and onset > patient.status_date:
        errors["onset_date"] = (
            f"Patient {patient.subject_code} died on {patient.status_date.isoformat()}; an event cannot start after that."
        )
    if ae.transplant_id:
        if ae.transplant.patient_id != patient.pk:
            errors["transplant"] = "This infusion belongs to another patient."
        elif ae.onset_date and ae.onset_date < local_date(ae.transplant.infused_at, patient.site):
            errors["onset_date"] = "An infusion-related event cannot start before the infusion."
    elif ae.category == c.AECategory.INFUSION_REACTION:
        errors["transplant"] = "Link the infusion for an infusion reaction."
    if ae.grade == c.CTCAEGrade.DEATH:
        if not ae.serious_death:
            errors["serious_death"] = "A grade 5 event results in death: tick the seriousness criterion 'death'."
        if ae.outcome != c.AEOutcome.FATAL:
            errors["outcome"] = "A grade 5 event has the outcome 'fatal'."
        if not ae.resolution_date:
            errors["resolution_date"] = "Give the date of death as the resolution date of a grade 5 event."
    elif ae.serious_death or ae.outcome == c.AEOutcome.FATAL:
        errors["grade"] = "An event that resulted in death is CTCAE grade 5."
    for name in ("initial_report_submitted_on", "complete_report_submitted_on"):
        value = getattr(ae, name)
        if value and ae.aware_date and value < ae.aware_date:
            errors[name] = "A report cannot be submitted before the site became aware of the event."
    if errors:
        raise ValidationError(errors)


def ae_can_code(actor, site_id: int | None) -> bool:
    """Coding an event to MedDRA (or taking the coding off) is a data manager's task at the patient's site
    (a superuser counts; so does a command run without an actor). Without a site (a new event): a data manager
    of any site."""
    if actor is None or (actor.is_active and actor.is_superuser):
        return True
    managing = Membership.objects.filter(user_id=actor.pk, user__is_active=True, role=Role.DATA_MANAGER)
    return (managing if site_id is None else managing.filter(site_id=site_id)).exists()


def _ensure_can_code(actor, site_id: int) -> None:
    if not ae_can_code(actor, site_id):
        raise ValidationError(
            {"meddra_term": gettext("Only a data manager of the patient's site can code an adverse event to MedDRA.")}
        )


def ae_check_posted_coding(*, ae: AdverseEvent, posted: str | None, actor) -> None:
    """A coding sent by a form that did not offer it (a page changed in the browser): refused as `ae_save` refuses
    it, when it differs from the stored one and `actor` may not code, rather than dropped without a word while
    the rest of the event saves. `posted`: the LLT's id as sent, "" for none, None when nothing was sent."""
    if posted is None:
        return
    stored = AdverseEvent.objects.filter(pk=ae.pk).values_list("meddra_term_id", flat=True).first() if ae.pk else None
    if posted.strip() != ("" if stored is None else str(stored)):
        _ensure_can_code(actor, ae.patient.site_id)


@transaction.atomic
def ae_save(*, ae: AdverseEvent, actor=None, reason: str = "") -> AdverseEvent:
    """Record or update an adverse event; computes the reporting clock; grade 5 records the death."""
    ensure_can_write(actor, ae.patient.site_id, field="patient")
    participation_check(site_id=ae.patient.site_id, study_id=ae.patient.study_id, field="patient")
    changing(ae, patient_id=ae.patient_id, study_id=ae.patient.study_id)
    if ae.pk and not reason.strip():
        raise ValidationError({"reason": gettext("Give a reason for changing an adverse event.")})
    stored_term = (
        AdverseEvent.objects.filter(pk=ae.pk).values_list("meddra_term_id", flat=True).first() if ae.pk else None
    )
    if ae.meddra_term_id != stored_term:
        _ensure_can_code(actor, ae.patient.site_id)
    meddra_apply(ae, stored_term_id=stored_term)
    full_clean_plain(ae, exclude=["initial_report_due", "complete_report_due"])
    _check_ae(ae)
    ae.initial_report_due, ae.complete_report_due = ae_due_dates(ae)
    first_infusion = day_zero(ae.patient)
    ae.pre_treatment = first_infusion is None or ae.onset_date < first_infusion
    if reason:
        ae._change_reason = reason
    ae.save()
    changed(ae, patient_id=ae.patient_id, study_id=ae.patient.study_id)
    patient = Patient.objects.get(pk=ae.patient_id)
    if ae.grade == c.CTCAEGrade.DEATH and patient.status != PatientStatus.DECEASED:
        patient_record_death(patient=patient, on_date=ae.resolution_date, cause=ae.term, actor=actor)
    return ae


def ae_code_meddra(*, ae: AdverseEvent, llt_code: int, actor=None) -> AdverseEvent:
    """Code `ae` to the LLT `llt_code` of the current release (the batch and API door; the admin sets the LLT
    on the event's page). The event term is not touched."""
    release = meddra_current_release()
    if release is None:
        raise ValidationError(
            {"meddra_term": gettext("No MedDRA release is loaded: load the centre's release with load_meddra.")}
        )
    term = MedDRATerm.objects.filter(release=release, llt_code=llt_code).first()
    if term is None:
        raise ValidationError(
            {
                "meddra_term": gettext("%(code)s is not an LLT code of MedDRA %(version)s.")
                % {"code": llt_code, "version": release.version}
            }
        )
    ae = AdverseEvent.objects.select_related("patient__site").get(pk=ae.pk)
    ae.meddra_term = term
    reason = f"coded to MedDRA {release.version} LLT {term.llt_code} ({term.llt_name})"
    return ae_save(ae=ae, actor=actor, reason=reason)


def ae_flag_pre_treatment(*, patient: Patient, day_zero: dt.date) -> int:
    """Day 0 moved: an event is pre-treatment when its onset is before the (new) first infusion. Returns
    how many events changed flag (each with a history row saying why)."""
    changed = 0
    for ae in AdverseEvent.objects.filter(patient=patient).select_for_update():
        flag = ae.onset_date < day_zero
        if ae.pre_treatment != flag:
            ae.pre_treatment = flag
            ae._change_reason = f"day 0 moved to {day_zero.isoformat()}"
            ae.save(update_fields=["pre_treatment", "updated_at"])
            changed += 1
    return changed


def ae_record(*, patient: Patient, actor=None, **fields) -> AdverseEvent:
    return ae_save(ae=AdverseEvent(patient=patient, **fields), actor=actor)


@transaction.atomic
def ae_record_submission(*, ae: AdverseEvent, report: str, on_date: dt.date, actor=None) -> AdverseEvent:
    """Record that the initial or complete expedited report was submitted."""
    ae = AdverseEvent.objects.select_for_update().select_related("patient__site").get(pk=ae.pk)
    field = {"initial": "initial_report_submitted_on", "complete": "complete_report_submitted_on"}.get(report)
    if field is None:
        raise ValidationError({"report": gettext("Say which report was submitted: 'initial' or 'complete'.")})
    if report == "complete" and ae.complete_report_due is None:
        raise ValidationError({"report": gettext("This event has no separate complete report due.")})
    setattr(ae, field, on_date)
    return ae_save(ae=ae, actor=actor, reason=f"{report} report submitted on {on_date.isoformat()}")


def ae_report_clock(ae: AdverseEvent, today: dt.date | None = None) -> list[dict]:
    """The state of each expedited report: due date, submitted or not, days left (negative when late)."""
    today = today or site_today(ae.patient.site)
    clock = []
    for name, due, submitted in (
        ("initial", ae.initial_report_due, ae.initial_report_submitted_on),
        ("complete", ae.complete_report_due, ae.complete_report_submitted_on),
    ):
        if due is None:
            continue
        if submitted:
            state = "submitted on time" if submitted <= due else "submitted late"
        else:
            state = "overdue" if today > due else "due"
        clock.append(
            {"report": name, "due": due, "submitted_on": submitted, "state": state, "days_left": (due - today).days}
        )
    return clock
