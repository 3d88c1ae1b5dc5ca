"""Follow-up visits of each patient, instantiated from the study's template at the first infusion."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from followup.constants import VisitOutcome
from followup.states import VisitQuerySet, visit_state
from patients.models import Patient
from registry.audit import audit_history
from registry.models import TimeStampedModel, VisitDefinition


class Visit(TimeStampedModel):
    """A follow-up time point for one patient (or an unscheduled visit) and what was recorded there.

    `outcome` holds facts (completed, missed, not required); whether an open visit is scheduled, due or
    overdue follows from its window and today's date in the site's time zone (`followup.states`).
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="visits")
    definition = models.ForeignKey(
        VisitDefinition,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="visits",
        help_text="Blank for an unscheduled visit.",
    )
    code = models.CharField(max_length=10)
    label = models.CharField(max_length=100)
    target_date = models.DateField()
    window_start = models.DateField()
    window_end = models.DateField()
    outcome = models.CharField(max_length=12, choices=VisitOutcome.choices, default=VisitOutcome.OPEN)
    actual_date = models.DateField(null=True, blank=True)
    outcome_reason = models.TextField(blank=True, help_text="Why the visit was missed or is not required.")
    deviation_reason = models.TextField(blank=True, help_text="Why the visit took place outside its window.")

    objects = VisitQuerySet.as_manager()
    SITE_LOOKUP = "patient__site"
    history = audit_history()

    class Meta:
        ordering = ["patient", "target_date"]
        constraints = [
            models.UniqueConstraint(fields=["patient", "code"], name="visit_code_unique_per_patient"),
            models.CheckConstraint(
                condition=Q(window_start__lte=F("target_date")) & Q(target_date__lte=F("window_end")),
                name="visit_window_contains_target",
            ),
            models.CheckConstraint(
                condition=~Q(outcome=VisitOutcome.COMPLETED) | Q(actual_date__isnull=False),
                name="visit_completed_has_date",
                violation_error_message="A completed visit needs its actual date.",
            ),
            models.CheckConstraint(
                condition=~Q(outcome__in=[VisitOutcome.MISSED, VisitOutcome.NOT_REQUIRED]) | ~Q(outcome_reason=""),
                name="visit_missed_has_reason",
                violation_error_message="A missed or not-required visit needs a reason.",
            ),
        ]
        indexes = [
            # The reminder sweeps and worklists look only at open visits by window.
            models.Index(fields=["window_start", "window_end"], condition=Q(outcome="open"), name="visit_open_window"),
        ]

    def __str__(self) -> str:
        return f"{self.patient.subject_code} {self.code}"

    def state(self, today=None):
        """The visit's state today in the site's time zone (or on `today`)."""
        from followup.states import site_today

        if today is None:
            today = site_today(self.patient.site)
        return visit_state(
            outcome=self.outcome, window_start=self.window_start, window_end=self.window_end, today=today
        )
