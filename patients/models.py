"""Patients (pseudonymous), their transplant events (infusions) and concomitant medications."""

from __future__ import annotations

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext, gettext_lazy

from core.audit import audit_history
from patients import constants as c
from registry.constants import Sex
from registry.models import CODE_VALIDATOR, CellProduct, Site, SiteScopedQuerySet, Study, TimeStampedModel


def plausible_range(low, high, unit: str) -> list:
    message = f"%(show_value)s {unit} is outside the plausible range {low:,}–{high:,} {unit}."
    return [MinValueValidator(low, message=message), MaxValueValidator(high, message=message)]


class Patient(TimeStampedModel):
    """A pseudonymous study subject at one site. No name and no hospital record number are stored."""

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="patients")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="patients")
    subject_code = models.CharField(max_length=40, validators=[CODE_VALIDATOR])
    sex = models.CharField(max_length=1, choices=Sex.choices)
    birth_year = models.PositiveSmallIntegerField(validators=[MinValueValidator(1900), MaxValueValidator(2100)])
    diagnosis_date = models.DateField(help_text="Date of SLE diagnosis.")
    classification_criteria = models.CharField(max_length=16, choices=c.ClassificationCriteria.choices)
    refractory_to = models.JSONField(
        default=list, blank=True, help_text="Therapies that failed (drug codes), e.g. cyclophosphamide."
    )
    refractory_notes = models.TextField(blank=True)
    consent_date = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=c.PatientStatus.choices, default=c.PatientStatus.SCREENING)
    status_date = models.DateField(null=True, blank=True, help_text="When the current status began.")
    status_reason = models.TextField(blank=True)

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "site"
    history = audit_history()

    class Meta:
        ordering = ["study", "subject_code"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "subject_code"],
                name="patient_subject_code_unique_per_study",
                violation_error_message=gettext_lazy(
                    "This subject code is not available in this study: choose another."
                ),
            ),
            models.CheckConstraint(
                condition=~Q(status__in=sorted(c.DATED_STATUSES)) | Q(status_date__isnull=False),
                name="patient_status_dated",
                violation_error_message="A completed, withdrawn, lost or deceased patient needs a status date.",
            ),
            models.CheckConstraint(
                condition=Q(status=c.PatientStatus.SCREENING) | Q(consent_date__isnull=False),
                name="patient_enrolled_has_consent",
                violation_error_message="A patient past screening needs a consent date.",
            ),
            models.CheckConstraint(
                condition=Q(birth_year__gte=1900) & Q(birth_year__lte=2100), name="patient_birth_year_plausible"
            ),
        ]

    def __str__(self) -> str:
        return self.subject_code

    def validate_constraints(self, exclude=None):
        # The code unique in its study is the subject code's fault: named so (REST framework's field errors, the
        # admin form), not as an error of the whole patient.
        try:
            super().validate_constraints(exclude=exclude)
        except ValidationError as exc:
            errors = exc.update_error_dict({})
            unique = next(c for c in self._meta.constraints if c.name == "patient_subject_code_unique_per_study")
            general = errors.get(NON_FIELD_ERRORS, [])
            moved = [e for e in general if e.message == unique.violation_error_message]
            if moved:
                errors[NON_FIELD_ERRORS] = [e for e in general if e not in moved]
                errors.setdefault("subject_code", []).extend(moved)
                errors = {field: messages for field, messages in errors.items() if messages}
            raise ValidationError(errors) from None

    @property
    def is_active(self) -> bool:
        return self.status not in c.INACTIVE_STATUSES


class TransplantEvent(TimeStampedModel):
    """One infusion of an MSC lot. Day 0 of follow-up is the first infusion of the course."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="transplants")
    lot = models.ForeignKey(CellProduct, on_delete=models.PROTECT, related_name="transplants")
    infused_at = models.DateTimeField()
    infusion_number = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    weight_kg = models.DecimalField(
        max_digits=5, decimal_places=1, validators=plausible_range(*c.WEIGHT_KG_RANGE, "kg")
    )
    dose_cells_per_kg = models.BigIntegerField(
        help_text="Cells per kg body weight, e.g. 1000000.",
        validators=plausible_range(*c.DOSE_CELLS_PER_KG_RANGE, "cells/kg"),
    )
    total_cells = models.BigIntegerField(editable=False, help_text="Dose × weight, computed.")
    route = models.CharField(max_length=4, choices=c.Route.choices, default=c.Route.IV)
    duration_minutes = models.PositiveSmallIntegerField(null=True, blank=True)
    premedication = models.TextField(blank=True)
    conditioning = models.TextField(blank=True, help_text="E.g. cyclophosphamide 1.0 g IV 24 h before.")

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "patient__site"
    history = audit_history()

    class Meta:
        ordering = ["patient", "infusion_number"]
        verbose_name = "transplant event (infusion)"
        verbose_name_plural = "transplant events (infusions)"
        constraints = [
            models.UniqueConstraint(fields=["patient", "infusion_number"], name="transplant_infusion_number_unique"),
            models.CheckConstraint(condition=Q(infusion_number__gte=1), name="transplant_infusion_number_positive"),
            models.CheckConstraint(
                condition=Q(weight_kg__gte=c.WEIGHT_KG_RANGE[0]) & Q(weight_kg__lte=c.WEIGHT_KG_RANGE[1]),
                name="transplant_weight_plausible",
            ),
            models.CheckConstraint(
                condition=Q(dose_cells_per_kg__gte=c.DOSE_CELLS_PER_KG_RANGE[0])
                & Q(dose_cells_per_kg__lte=c.DOSE_CELLS_PER_KG_RANGE[1]),
                name="transplant_dose_plausible",
            ),
            models.CheckConstraint(condition=Q(total_cells__gt=0), name="transplant_total_cells_positive"),
        ]

    def __str__(self) -> str:
        return gettext("%(subject)s infusion %(number)s") % {
            "subject": self.patient.subject_code,
            "number": self.infusion_number,
        }


class ConcomitantMedication(TimeStampedModel):
    """A medication taken alongside MSCT, with dose, frequency and dates (stop date or ongoing)."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="medications")
    drug = models.CharField(max_length=20, choices=c.Drug.choices)
    drug_other = models.CharField(max_length=100, blank=True, help_text="Name when the drug is 'other'.")
    dose = models.DecimalField(max_digits=9, decimal_places=3, validators=[MinValueValidator(0)])
    unit = models.CharField(max_length=8, choices=c.DoseUnit.choices)
    frequency = models.CharField(max_length=10, choices=c.Frequency.choices)
    start_date = models.DateField()
    stop_date = models.DateField(null=True, blank=True)
    ongoing = models.BooleanField(default=False)

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "patient__site"
    history = audit_history()
    # No drug name starts like a spreadsheet formula: refused (core/spreadsheets.py).
    PLAIN_TEXT_FIELDS = ("drug_other",)

    class Meta:
        ordering = ["patient", "start_date"]
        constraints = [
            models.CheckConstraint(
                condition=Q(stop_date__isnull=True) | Q(stop_date__gte=F("start_date")),
                name="medication_stop_after_start",
                violation_error_message="The stop date cannot be before the start date.",
            ),
            models.CheckConstraint(
                condition=(Q(ongoing=True) & Q(stop_date__isnull=True))
                | (Q(ongoing=False) & Q(stop_date__isnull=False)),
                name="medication_stopped_or_ongoing",
                violation_error_message="Give a stop date, or mark the medication ongoing (not both).",
            ),
            models.CheckConstraint(
                condition=~Q(drug=c.Drug.OTHER) | ~Q(drug_other=""),
                name="medication_other_named",
                violation_error_message="Name the drug when it is 'other'.",
            ),
            models.CheckConstraint(condition=Q(dose__gte=0), name="medication_dose_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.get_drug_display()} {self.dose} {self.unit}"
