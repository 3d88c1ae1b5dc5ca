"""The visit schedule: planned visits from the study's template once day 0 is known, moved with day 0,
and taken out when a patient leaves follow-up."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext

from core.audit import bulk_create_audited
from followup.constants import VisitOutcome
from followup.models import Visit
from followup.services.outcomes import outcomes_recompute
from patients.models import Patient
from registry.models import VisitDefinition

# Schedule ----------------------------------------------------------------------------------------------


def _visit_from(definition: VisitDefinition, patient: Patient, day_zero: dt.date) -> Visit:
    target = day_zero + dt.timedelta(days=definition.offset_days)
    return Visit(
        patient=patient,
        definition=definition,
        code=definition.code,
        label=definition.label,
        label_zh=definition.label_zh,
        target_date=target,
        window_start=target - dt.timedelta(days=definition.window_before_days),
        window_end=target + dt.timedelta(days=definition.window_after_days),
    )


@transaction.atomic
def visits_schedule(*, patient: Patient, day_zero: dt.date) -> list[Visit]:
    """Instantiate the study's template for a patient from day 0. Existing visits are left as they are."""
    existing = set(patient.visits.values_list("code", flat=True))
    visits = [
        _visit_from(definition, patient, day_zero)
        for definition in VisitDefinition.objects.filter(study_id=patient.study_id).order_by("offset_days")
        if definition.code not in existing
    ]
    for visit in visits:
        visit.full_clean(exclude=["patient", "definition"], validate_unique=False, validate_constraints=False)
    bulk_create_audited(Visit, visits, reason=f"scheduled from day 0 {day_zero.isoformat()}")
    if visits and not patient.is_active:
        visits_take_out(patient=patient, on_date=patient.status_date, reason=patient.status_reason or patient.status)
    return visits


@transaction.atomic
def visits_move_day_zero(*, patient: Patient, day_zero: dt.date) -> int:
    """Day 0 moved: move every open scheduled visit to the new day 0 (recorded visits stay as recorded)."""
    moved = 0
    open_visits = patient.visits.filter(outcome=VisitOutcome.OPEN, definition__isnull=False)
    for visit in open_visits.select_related("definition"):
        fresh = _visit_from(visit.definition, patient, day_zero)
        visit.target_date, visit.window_start, visit.window_end = (
            fresh.target_date,
            fresh.window_start,
            fresh.window_end,
        )
        visit._change_reason = f"day 0 moved to {day_zero.isoformat()}"
        visit.save(update_fields=["target_date", "window_start", "window_end", "updated_at"])
        moved += 1
    outcomes_recompute(patient=patient)
    return moved


@transaction.atomic
def visits_take_out(*, patient: Patient, on_date: dt.date, reason: str) -> int:
    """Mark every open visit whose window has not closed by `on_date` as not required.

    Visits whose window closed before the patient left stay as they are: they were due while the patient
    was in follow-up, and only a coordinator can say whether they were missed.
    """
    if not reason.strip():
        raise ValidationError({"reason": gettext("Give a reason for taking visits out of the schedule.")})
    note = f"{patient.get_status_display()} on {on_date.isoformat()}: {reason}"
    visits = list(patient.visits.filter(outcome=VisitOutcome.OPEN, window_end__gte=on_date))
    for visit in visits:
        visit.outcome, visit.outcome_reason = VisitOutcome.NOT_REQUIRED, note
        visit._change_reason = note
        visit.save(update_fields=["outcome", "outcome_reason", "updated_at"])
    return len(visits)
