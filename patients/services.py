"""Writes of the patients app: enrolment and status, transplant events and concomitant medications."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import ROUND_HALF_UP, Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext

from core.signals import changed, changing
from patients import constants as c
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from patients.signals import day_zero_moved, first_infusion_recorded, patient_left_follow_up
from registry.models import CellProduct, Site, Study
from registry.services import (
    ensure_can_write,
    horizon_errors,
    lot_check_infusable,
    participation_check,
    save_validated,
    study_check_enrolment,
    study_check_infusions,
)


def local_date(moment: dt.datetime, site: Site) -> dt.date:
    """The calendar date of an instant at the site (its IANA zone)."""
    if timezone.is_naive(moment):
        raise ValidationError({"infused_at": gettext("Give the infusion time with its time zone.")})
    return moment.astimezone(zoneinfo.ZoneInfo(site.time_zone)).date()


def day_zero(patient: Patient, infusions=None) -> dt.date | None:
    """Day 0 of follow-up: the local date of the first infusion of the course (None before it). `infusions`,
    the patient's infusions when the caller has read them already, saves the query."""
    if infusions is None:
        first = patient.transplants.filter(infusion_number=1).first()
    else:
        first = next((t for t in infusions if t.infusion_number == 1), None)
    return local_date(first.infused_at, patient.site) if first else None


# Patients ----------------------------------------------------------------------------------------------


def _check_patient(patient: Patient) -> None:
    errors: dict[str, str] = {}
    today = patient.site.today() if patient.site_id else timezone.now().date()
    if patient.site_id and patient.study_id:
        try:
            participation_check(site_id=patient.site_id, study_id=patient.study_id, field="site")
        except ValidationError as exc:
            errors.update({name: " ".join(messages) for name, messages in exc.message_dict.items()})
    if (
        patient.study_id
        and patient.subject_code
        and Patient.objects.filter(study_id=patient.study_id, subject_code=patient.subject_code)
        .exclude(pk=patient.pk)
        .exists()
    ):
        # The same words whoever holds the code: a site may not learn another's subject codes.
        errors["subject_code"] = (
            f"Subject code {patient.subject_code} is not available in this study: choose another (your site's "
            "own patients are listed by the API and the admin)."
        )
    if patient.diagnosis_date and patient.diagnosis_date > today:
        errors["diagnosis_date"] = "The diagnosis date cannot be in the future."
    elif patient.diagnosis_date and patient.birth_year and patient.diagnosis_date.year < patient.birth_year:
        errors["diagnosis_date"] = "The diagnosis date cannot be before the year of birth."
    if patient.consent_date and patient.consent_date > today:
        errors["consent_date"] = "The consent date cannot be in the future."
    first = patient.transplants.order_by("infused_at").first() if patient.pk else None
    if first and (not patient.consent_date or patient.consent_date > local_date(first.infused_at, patient.site)):
        errors["consent_date"] = (
            f"Infusion 1 is recorded on {local_date(first.infused_at, patient.site).isoformat()}; consent must be "
            "dated on or before it."
        )
    unknown = [d for d in patient.refractory_to or [] if d not in c.Drug.values]
    if not isinstance(patient.refractory_to, list):
        errors["refractory_to"] = "Give a list of drug codes."
    elif unknown:
        errors["refractory_to"] = (
            f"Unknown drug code(s) {', '.join(map(str, unknown))}; use one of {', '.join(c.Drug.values)}."
        )
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def patient_enroll(
    *,
    study: Study,
    site: Site,
    subject_code: str,
    sex: str,
    birth_year: int,
    diagnosis_date: dt.date,
    classification_criteria: str,
    consent_date: dt.date | None,
    refractory_to: list[str] | None = None,
    refractory_notes: str = "",
    actor=None,
) -> Patient:
    """Register a patient: enrolled when consent is given, in screening otherwise."""
    ensure_can_write(actor, site)
    study_check_enrolment(study)
    changing(Patient(study=study, site=site, subject_code=subject_code), patient_id=None, study_id=study.pk)
    patient = Patient(
        study=study,
        site=site,
        subject_code=subject_code,
        sex=sex,
        birth_year=birth_year,
        diagnosis_date=diagnosis_date,
        classification_criteria=classification_criteria,
        consent_date=consent_date,
        refractory_to=list(refractory_to or []),
        refractory_notes=refractory_notes,
        status=c.PatientStatus.ENROLLED if consent_date else c.PatientStatus.SCREENING,
        status_date=consent_date,
    )
    _check_patient(patient)
    save_validated(patient)
    changed(patient, patient_id=patient.pk, study_id=patient.study_id)
    return patient


@transaction.atomic
def patient_update(*, patient: Patient, actor=None, reason: str = "", **changes) -> Patient:
    """Change a patient's details (not their status: see `patient_change_status`)."""
    if "status" in changes or "status_date" in changes:
        raise ValidationError(
            {"status": gettext("Change the status with patient_change_status, which applies its rules.")}
        )
    if patient.pk and not reason:
        raise ValidationError({"reason": gettext("Give a reason for changing clinical data.")})
    original_site = Patient.objects.filter(pk=patient.pk).values_list("site_id", flat=True).first()
    ensure_can_write(actor, original_site or patient.site_id)
    changing(patient, patient_id=patient.pk, study_id=patient.study_id)
    for name, value in changes.items():
        setattr(patient, name, value)
    ensure_can_write(actor, patient.site_id)
    if patient.status == c.PatientStatus.SCREENING and patient.consent_date:
        study_check_enrolment(patient.study)
        patient.status, patient.status_date = c.PatientStatus.ENROLLED, patient.consent_date
    _check_patient(patient)
    save_validated(patient, reason=reason)
    changed(patient, patient_id=patient.pk, study_id=patient.study_id)
    return patient


@transaction.atomic
def patient_change_status(*, patient: Patient, status: str, on_date: dt.date, reason: str = "", actor=None) -> Patient:
    """Move a patient to a new status. Leaving follow-up takes every future visit out of the schedule."""
    patient = Patient.objects.select_for_update().get(pk=patient.pk)
    ensure_can_write(actor, patient.site_id)
    participation_check(site_id=patient.site_id, study_id=patient.study_id, field="patient")
    changing(patient, patient_id=patient.pk, study_id=patient.study_id)
    if status not in c.PatientStatus.values:
        raise ValidationError(
            {
                "status": gettext("Unknown status '%(status)s'; use one of %(choices)s.")
                % {"status": status, "choices": ", ".join(c.PatientStatus.values)}
            }
        )
    if patient.status == c.PatientStatus.DECEASED:
        raise ValidationError({"status": gettext("The patient is recorded as deceased; the status cannot change.")})
    if patient.status in c.INACTIVE_STATUSES and status not in c.INACTIVE_STATUSES:
        raise ValidationError(
            {
                "status": gettext("The patient left follow-up (%(status)s); re-entry is not supported.")
                % {"status": patient.get_status_display()}
            }
        )
    if on_date > patient.site.today():
        raise ValidationError({"status_date": gettext("The status date cannot be in the future.")})
    if status in c.DATED_STATUSES and not reason.strip():
        raise ValidationError(
            {
                "status_reason": gettext("Give a reason for the status '%(status)s'.")
                % {"status": gettext(c.PatientStatus(status).label)}
            }
        )
    if status != c.PatientStatus.SCREENING and not patient.consent_date:
        raise ValidationError({"consent_date": gettext("Record the consent date before changing the status.")})
    if patient.consent_date and on_date < patient.consent_date:
        raise ValidationError({"status_date": gettext("The status date cannot be before consent.")})
    last = patient.transplants.order_by("-infused_at").first()
    if last and status in c.INACTIVE_STATUSES and on_date < local_date(last.infused_at, patient.site):
        raise ValidationError(
            {
                "status_date": gettext(
                    "Infusion %(number)s is recorded on %(date)s; the patient cannot have left follow-up before it."
                )
                % {"number": last.infusion_number, "date": local_date(last.infused_at, patient.site).isoformat()}
            }
        )
    patient.status, patient.status_date, patient.status_reason = status, on_date, reason
    save_validated(patient, reason=reason or f"status {status}")
    changed(patient, patient_id=patient.pk, study_id=patient.study_id)
    if status in c.INACTIVE_STATUSES:
        patient_left_follow_up.send(sender=Patient, patient=patient, status=status, on_date=on_date, reason=reason)
    return patient


def patient_withdraw(*, patient: Patient, on_date: dt.date, reason: str, actor=None) -> Patient:
    return patient_change_status(
        patient=patient, status=c.PatientStatus.WITHDRAWN, on_date=on_date, reason=reason, actor=actor
    )


def patient_record_death(*, patient: Patient, on_date: dt.date, cause: str, actor=None) -> Patient:
    return patient_change_status(
        patient=patient, status=c.PatientStatus.DECEASED, on_date=on_date, reason=cause, actor=actor
    )


# Transplant events -------------------------------------------------------------------------------------


def total_cells_for(*, weight_kg: Decimal, dose_cells_per_kg: int) -> int:
    return int((Decimal(str(weight_kg)) * Decimal(dose_cells_per_kg)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _check_range(errors: dict, field: str, value, low, high, unit: str) -> None:
    if value is None:
        errors[field] = "This field is required."
    elif not (low <= Decimal(str(value)) <= high):
        errors[field] = f"{value} {unit} is outside the plausible range {low}–{high} {unit}."


def _check_transplant(event: TransplantEvent) -> None:
    """Every rule an infusion must meet; raises ValidationError naming the field and the rule.

    Long because each rule is one check in reading order, and each message is translated with its values."""
    patient, lot = event.patient, event.lot
    participation_check(site_id=patient.site_id, study_id=patient.study_id, field="patient")
    errors: dict[str, str] = {}
    _check_range(errors, "weight_kg", event.weight_kg, *c.WEIGHT_KG_RANGE, "kg")
    _check_range(errors, "dose_cells_per_kg", event.dose_cells_per_kg, *c.DOSE_CELLS_PER_KG_RANGE, "cells/kg")
    if event.infused_at is None:
        errors["infused_at"] = "This field is required."
    elif timezone.is_naive(event.infused_at):
        errors["infused_at"] = "Give the infusion time with its time zone."
    if errors:
        raise ValidationError(errors)
    if event.infused_at > timezone.now():
        raise ValidationError({"infused_at": gettext("An infusion cannot be recorded in the future.")})
    on_date = local_date(event.infused_at, patient.site)

    if not patient.consent_date:
        raise ValidationError(
            {"infused_at": gettext("Patient %(code)s has no consent recorded.") % {"code": patient.subject_code}}
        )
    if on_date < patient.consent_date:
        raise ValidationError(
            {
                "infused_at": gettext("The infusion (%(date)s) is before consent (%(consent)s).")
                % {"date": on_date.isoformat(), "consent": patient.consent_date.isoformat()}
            }
        )
    if patient.status in c.INACTIVE_STATUSES and patient.status_date and on_date >= patient.status_date:
        raise ValidationError(
            {
                "patient": gettext(
                    "Patient %(code)s is %(status)s since %(date)s; no infusion can be recorded after that."
                )
                % {
                    "code": patient.subject_code,
                    "status": patient.get_status_display().lower(),
                    "date": patient.status_date.isoformat(),
                }
            }
        )
    if lot.study_id != patient.study_id:
        raise ValidationError({"lot": gettext("Lot %(lot)s belongs to another study.") % {"lot": lot.lot_number}})
    lot_check_infusable(lot, on_date=on_date)

    others = TransplantEvent.objects.filter(patient=patient).exclude(pk=event.pk)
    if event.pk is None and event.infusion_number != others.count() + 1:
        raise ValidationError(
            {
                "infusion_number": gettext(
                    "Infusions are numbered in order: this patient's next infusion is number %(next)s, not %(number)s."
                )
                % {"next": others.count() + 1, "number": event.infusion_number}
            }
        )
    previous = others.filter(infusion_number__lt=event.infusion_number).order_by("-infusion_number").first()
    following = others.filter(infusion_number__gt=event.infusion_number).order_by("infusion_number").first()
    if previous and event.infused_at <= previous.infused_at:
        raise ValidationError(
            {
                "infused_at": gettext("Infusion %(number)s must come after infusion %(previous)s (%(when)s).")
                % {
                    "number": event.infusion_number,
                    "previous": previous.infusion_number,
                    "when": previous.infused_at.isoformat(),
                }
            }
        )
    if following and event.infused_at >= following.infused_at:
        raise ValidationError(
            {
                "infused_at": gettext("Infusion %(number)s must come before infusion %(following)s.")
                % {"number": event.infusion_number, "following": following.infusion_number}
            }
        )

    event.total_cells = total_cells_for(weight_kg=event.weight_kg, dose_cells_per_kg=event.dose_cells_per_kg)
    used = (
        TransplantEvent.objects.filter(lot=lot).exclude(pk=event.pk).aggregate(total=Sum("total_cells"))["total"] or 0
    )
    remaining = lot.total_cells - used
    if event.total_cells > remaining:
        raise ValidationError(
            {
                "dose_cells_per_kg": (
                    f"Dose × weight = {event.total_cells:,} cells, more than lot {lot.lot_number} still holds "
                    f"({remaining:,} of {lot.total_cells:,} cells)."
                )
            },
            code="lot_exhausted",
        )


@transaction.atomic
def transplant_record(
    *,
    patient: Patient,
    lot: CellProduct,
    infused_at: dt.datetime,
    weight_kg: Decimal,
    dose_cells_per_kg: int,
    infusion_number: int | None = None,
    route: str = c.Route.IV,
    duration_minutes: int | None = None,
    premedication: str = "",
    conditioning: str = "",
    actor=None,
) -> TransplantEvent:
    """Record an infusion. The first infusion of the course fixes day 0 and schedules the visits."""
    # Lock the patient (infusion numbering) and the lot (cells remaining) against concurrent infusions.
    patient = Patient.objects.select_for_update(of=("self",)).select_related("site", "study").get(pk=patient.pk)
    lot = CellProduct.objects.select_for_update().get(pk=lot.pk)
    ensure_can_write(actor, patient.site_id, field="patient")
    study_check_infusions(patient.study)
    changing(patient, patient_id=patient.pk, study_id=patient.study_id)
    if infusion_number is None:
        infusion_number = patient.transplants.count() + 1
    event = TransplantEvent(
        patient=patient,
        lot=lot,
        infused_at=infused_at,
        infusion_number=infusion_number,
        weight_kg=weight_kg,
        dose_cells_per_kg=dose_cells_per_kg,
        route=route,
        duration_minutes=duration_minutes,
        premedication=premedication,
        conditioning=conditioning,
    )
    _check_transplant(event)
    save_validated(event)
    changed(event, patient_id=patient.pk, study_id=patient.study_id)
    if event.infusion_number == 1:
        first_infusion_recorded.send(
            sender=TransplantEvent, patient=patient, transplant=event, day_zero=local_date(infused_at, patient.site)
        )
    return event


@transaction.atomic
def transplant_correct(*, transplant: TransplantEvent, reason: str, actor=None, **changes) -> TransplantEvent:
    """Correct a recorded infusion (with a reason). Moving the first infusion moves day 0 and open visits."""
    if not reason.strip():
        raise ValidationError({"reason": gettext("Give a reason for correcting an infusion.")})
    event = TransplantEvent.objects.select_for_update().select_related("patient__site", "lot").get(pk=transplant.pk)
    ensure_can_write(actor, event.patient.site_id, field="patient")
    changing(event, patient_id=event.patient_id, study_id=event.patient.study_id)
    if "patient" in changes or "infusion_number" in changes:
        raise ValidationError(
            {"infusion_number": gettext("The patient and the infusion number of an infusion cannot change.")}
        )
    old_day = local_date(event.infused_at, event.patient.site)
    for name, value in changes.items():
        setattr(event, name, value)
    if "lot" in changes:
        event.lot = CellProduct.objects.select_for_update().get(pk=event.lot.pk)
    _check_transplant(event)
    save_validated(event, reason=reason)
    changed(event, patient_id=event.patient_id, study_id=event.patient.study_id)
    new_day = local_date(event.infused_at, event.patient.site)
    if event.infusion_number == 1 and new_day != old_day:
        day_zero_moved.send(sender=TransplantEvent, patient=event.patient, transplant=event, day_zero=new_day)
    return event


# Concomitant medications -------------------------------------------------------------------------------


@transaction.atomic
def medication_save(*, medication: ConcomitantMedication, actor=None, reason: str = "") -> ConcomitantMedication:
    """Add or change a concomitant medication (a change needs a reason)."""
    ensure_can_write(actor, medication.patient.site_id, field="patient")
    participation_check(site_id=medication.patient.site_id, study_id=medication.patient.study_id, field="patient")
    changing(medication, patient_id=medication.patient_id, study_id=medication.patient.study_id)
    if medication.pk and not reason.strip():
        raise ValidationError({"reason": gettext("Give a reason for changing clinical data.")})
    patient = Patient.objects.select_related("site").get(pk=medication.patient_id)  # as stored: its status now
    start = medication.start_date
    today = patient.site.today()
    if start and start > today:
        raise ValidationError({"start_date": gettext("The start date cannot be in the future.")})
    beyond = horizon_errors(today, stop_date=medication.stop_date)
    if beyond:
        raise ValidationError(beyond)
    # A start before consent is kept as given: a medication taken since before the study (prior and
    # concomitant, as CDASH's CM) still counts for the outcomes on the days it is taken.
    if start and patient.status == c.PatientStatus.DECEASED and patient.status_date and start > patient.status_date:
        raise ValidationError(
            {
                "start_date": gettext("Patient %(code)s died on %(date)s; a medication cannot start after that.")
                % {"code": patient.subject_code, "date": patient.status_date.isoformat()}
            }
        )
    save_validated(medication, reason=reason)
    changed(medication, patient_id=medication.patient_id, study_id=medication.patient.study_id)
    return medication


def medication_record(
    *,
    patient: Patient,
    drug: str,
    dose: Decimal,
    unit: str,
    frequency: str,
    start_date: dt.date,
    stop_date: dt.date | None = None,
    drug_other: str = "",
    actor=None,
) -> ConcomitantMedication:
    return medication_save(
        medication=ConcomitantMedication(
            patient=patient,
            drug=drug,
            drug_other=drug_other,
            dose=dose,
            unit=unit,
            frequency=frequency,
            start_date=start_date,
            stop_date=stop_date,
            ongoing=stop_date is None,
        ),
        actor=actor,
    )
