"""Records already stored that break a time rule (docs/clinical-rules.md, "Follow-up schedule"): the data
manager's list, to correct each through its page with a reason. `manage.py check_data` prints it.

The rules are those `visit_record` applies before storing (`followup/services/recording.py`,
`_visit_date_errors`); this finds what was stored before they held, or around them. Rows are read as plain
values, a chunk at a time, so memory does not grow with the registry.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from django.utils import timezone

from followup.constants import VisitOutcome
from followup.models import AdverseEvent, Visit
from patients.constants import INACTIVE_STATUSES, PatientStatus
from patients.models import ConcomitantMedication, Patient

CHUNK = 5000


@dataclass(frozen=True)
class Breach:
    site: str
    subject: str
    record: str
    on_date: dt.date
    rule: str


@dataclass(frozen=True)
class _Course:
    site: str
    subject: str
    consent: dt.date | None
    ended: dt.date | None  # the status date of a patient who died, withdrew or was lost to follow-up
    ended_as: str
    today: dt.date


def _courses(patients) -> dict[int, _Course]:
    courses = {}
    today_by_zone: dict[str, dt.date] = {}
    for pk, site, zone, subject, consent, status, status_date in patients.values_list(
        "pk", "site__code", "site__time_zone", "subject_code", "consent_date", "status", "status_date"
    ).iterator(chunk_size=CHUNK):
        if zone not in today_by_zone:
            today_by_zone[zone] = timezone.now().astimezone(zoneinfo.ZoneInfo(zone)).date()
        ended = status_date if status in INACTIVE_STATUSES else None
        courses[pk] = _Course(site, subject, consent, ended, status, today_by_zone[zone])
    return courses


def _common(
    course: _Course, on_date: dt.date, *, after_death_only: bool = False, before_consent: bool = True
) -> list[str]:
    """The rules of every dated record; an adverse event or a medication may follow a withdrawal or a loss to
    follow-up (it is still reported), not a death; a medication may have started before consent."""
    rules = []
    if on_date > course.today:
        rules.append("in the future")
    if before_consent and course.consent and on_date < course.consent:
        rules.append(f"before consent ({course.consent.isoformat()})")
    ended = course.ended and (not after_death_only or course.ended_as == PatientStatus.DECEASED)
    if ended and on_date > course.ended:
        rules.append(f"after the patient left follow-up ({course.ended_as}, {course.ended.isoformat()})")
    return rules


def time_rule_breaches(*, study_code: str | None = None) -> list[Breach]:
    """Every stored visit, adverse event and medication that breaks a time rule, ordered by site, subject
    and date. Adverse events before the first infusion are allowed (pre-treatment), before consent not."""
    patients = Patient.objects.order_by()
    if study_code:
        patients = patients.filter(study__code=study_code)
    courses = _courses(patients)
    breaches: list[Breach] = []
    visits = Visit.objects.filter(patient_id__in=patients.values("pk"), actual_date__isnull=False).exclude(
        outcome=VisitOutcome.OPEN
    )
    for patient_id, code, actual, target, offset in visits.values_list(
        "patient_id", "code", "actual_date", "target_date", "definition__offset_days"
    ).iterator(chunk_size=CHUNK):
        course = courses[patient_id]
        rules = _common(course, actual)
        if offset is not None:
            day_zero = target - dt.timedelta(days=offset)
            if offset == 0 and actual > day_zero:
                rules.append(f"a baseline after day 0 ({day_zero.isoformat()})")
            elif offset > 0 and actual <= day_zero:
                rules.append(f"on or before day 0 ({day_zero.isoformat()})")
        breaches += [Breach(course.site, course.subject, f"visit {code}", actual, rule) for rule in rules]
    for model, label, date_field, before_consent in (
        (AdverseEvent, "adverse event", "onset_date", True),
        (ConcomitantMedication, "medication", "start_date", False),
    ):
        rows = model.objects.filter(patient_id__in=patients.values("pk")).order_by()
        for pk, patient_id, on_date in rows.values_list("pk", "patient_id", date_field).iterator(chunk_size=CHUNK):
            course = courses[patient_id]
            rules = _common(course, on_date, after_death_only=True, before_consent=before_consent)
            breaches += [Breach(course.site, course.subject, f"{label} {pk}", on_date, rule) for rule in rules]
    return sorted(breaches, key=lambda b: (b.site, b.subject, b.on_date, b.record, b.rule))
