from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.text import capfirst
from django.utils.translation import gettext, gettext_lazy

from patients import services
from patients.constants import Drug, PatientStatus
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from registry.admin_tools import ScopedAdmin, ServiceModelForm

PATIENT_DETAIL_FIELDS = [
    "sex",
    "birth_year",
    "diagnosis_date",
    "classification_criteria",
    "refractory_to",
    "refractory_notes",
    "consent_date",
]


class DrugCodesField(forms.MultipleChoiceField):
    """Drug codes ticked in a list of boxes, as the list stored in the patient's JSON field.

    Which codes are allowed is the patients service's rule: a code that is not offered (a stale page, a
    crafted request) reaches the service, which refuses it naming the field."""

    widget = forms.CheckboxSelectMultiple

    def valid_value(self, value):
        return True


class PatientForm(ServiceModelForm):
    def clean_refractory_to(self):
        ticked = self.cleaned_data.get("refractory_to") or []
        stored = self.instance.refractory_to if self.instance.pk else None
        # The same drugs ticked again keep the stored list as it is (its order included): not a change.
        if isinstance(stored, list) and sorted(map(str, stored)) == sorted(ticked):
            return stored
        return ticked


@admin.register(Patient)
class PatientAdmin(ScopedAdmin):
    form = PatientForm

    class Media:
        css = {"all": ["patients/patient.css"]}

    list_display = ["subject_code", "study", "site", "sex", "birth_year", "status", "consent_date"]
    list_filter = ["status", "study", "site", "classification_criteria"]
    search_fields = ["subject_code"]
    list_select_related = ["study", "site"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["study", "site", "subject_code", *PATIENT_DETAIL_FIELDS]
        return [
            "study",
            "site",
            "subject_code",
            *PATIENT_DETAIL_FIELDS,
            "status",
            "status_date",
            "status_reason",
            "reason",
        ]

    def get_readonly_fields(self, request, obj=None):
        return ["study", "subject_code"] if obj is not None else []

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "refractory_to":
            return DrugCodesField(
                choices=[(code, gettext_lazy(label)) for code, label in Drug.choices],
                required=False,
                label=capfirst(db_field.verbose_name),
                help_text=db_field.help_text,
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def service_save(self, request, instance, cleaned_data, change):
        if not change:
            fields = {
                name: cleaned_data.get(name) for name in ["study", "site", "subject_code", *PATIENT_DETAIL_FIELDS]
            }
            return services.patient_enroll(actor=request.user, **fields)
        original = Patient.objects.get(pk=instance.pk)
        reason = cleaned_data.get("reason", "")
        detail_changes = {
            name: cleaned_data[name]
            for name in [*PATIENT_DETAIL_FIELDS, "site"]
            if name in cleaned_data and cleaned_data[name] != getattr(original, name)
        }
        status_changed = (instance.status, instance.status_date) != (original.status, original.status_date)
        # Apply status and details separately: each has its own rules.
        instance.status, instance.status_date = original.status, original.status_date
        instance.status_reason = original.status_reason
        if detail_changes:
            services.patient_update(patient=original, actor=request.user, reason=reason, **detail_changes)
        if status_changed:
            if not cleaned_data.get("status_date"):
                raise ValidationError({"status_date": gettext("Give the date of the new status.")})
            if cleaned_data["status"] == PatientStatus.ENROLLED and original.status == PatientStatus.SCREENING:
                raise ValidationError({"consent_date": gettext("A patient is enrolled by recording the consent date.")})
            services.patient_change_status(
                patient=original,
                status=cleaned_data["status"],
                on_date=cleaned_data["status_date"],
                reason=cleaned_data.get("status_reason") or reason,
                actor=request.user,
            )
        if not detail_changes and not status_changed:
            return original
        return Patient.objects.get(pk=instance.pk)


TRANSPLANT_FIELDS = [
    "patient",
    "lot",
    "infused_at",
    "infusion_number",
    "weight_kg",
    "dose_cells_per_kg",
    "route",
    "duration_minutes",
    "premedication",
    "conditioning",
]


@admin.register(TransplantEvent)
class TransplantEventAdmin(ScopedAdmin):
    list_display = ["patient", "infusion_number", "infused_at", "lot", "weight_kg", "dose_cells_per_kg", "total_cells"]
    list_filter = ["infusion_number", "lot__tissue_source", "patient__site", "patient__study"]
    search_fields = ["patient__subject_code", "lot__lot_number"]
    list_select_related = ["patient", "lot"]
    readonly_fields = ["total_cells"]
    autocomplete_fields = ["patient"]

    def get_readonly_fields(self, request, obj=None):
        return ["total_cells", "patient", "infusion_number"] if obj is not None else ["total_cells"]

    def service_save(self, request, instance, cleaned_data, change):
        if not change:
            fields = {name: cleaned_data.get(name) for name in TRANSPLANT_FIELDS if name in cleaned_data}
            fields = {k: v for k, v in fields.items() if v is not None or k == "duration_minutes"}
            return services.transplant_record(actor=request.user, **fields)
        original = TransplantEvent.objects.get(pk=instance.pk)
        changes = {
            name: cleaned_data[name]
            for name in TRANSPLANT_FIELDS
            if name in cleaned_data and cleaned_data[name] != getattr(original, name)
        }
        if not changes:
            return original
        return services.transplant_correct(
            transplant=original, reason=cleaned_data.get("reason", ""), actor=request.user, **changes
        )


@admin.register(ConcomitantMedication)
class ConcomitantMedicationAdmin(ScopedAdmin):
    list_display = ["patient", "drug", "dose", "unit", "frequency", "start_date", "stop_date", "ongoing"]
    list_filter = ["drug", "ongoing", "patient__site"]
    search_fields = ["patient__subject_code"]
    list_select_related = ["patient"]
    autocomplete_fields = ["patient"]

    def service_save(self, request, instance, cleaned_data, change):
        return services.medication_save(medication=instance, actor=request.user, reason=cleaned_data.get("reason", ""))
