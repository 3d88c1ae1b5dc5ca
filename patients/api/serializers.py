from rest_framework import serializers

from core.api.serializers import DataQualityField, ModelSerializer, OffsetDateTimeField, TextField
from patients import constants as c
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from registry.constants import Sex

# Output ------------------------------------------------------------------------------------------------


class PatientSerializer(ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="code", read_only=True)
    site = serializers.SlugRelatedField(slug_field="code", read_only=True)
    refractory_to = serializers.ListField(child=serializers.ChoiceField(choices=c.Drug.choices))

    data_quality = DataQualityField()

    class Meta:
        model = Patient
        fields = [
            "id",
            "study",
            "site",
            "subject_code",
            "sex",
            "birth_year",
            "diagnosis_date",
            "classification_criteria",
            "refractory_to",
            "refractory_notes",
            "consent_date",
            "status",
            "status_date",
            "status_reason",
            "created_at",
            "updated_at",
            "data_quality",
        ]


class TransplantSerializer(ModelSerializer):
    study = serializers.CharField(source="patient.study.code", read_only=True)
    subject_code = serializers.CharField(source="patient.subject_code", read_only=True)
    lot_number = serializers.CharField(source="lot.lot_number", read_only=True)

    class Meta:
        model = TransplantEvent
        fields = [
            "id",
            "study",
            "subject_code",
            "lot_number",
            "infused_at",
            "infusion_number",
            "weight_kg",
            "dose_cells_per_kg",
            "total_cells",
            "route",
            "duration_minutes",
            "premedication",
            "conditioning",
            "updated_at",
        ]


class MedicationSerializer(ModelSerializer):
    study = serializers.CharField(source="patient.study.code", read_only=True)
    subject_code = serializers.CharField(source="patient.subject_code", read_only=True)

    class Meta:
        model = ConcomitantMedication
        fields = [
            "id",
            "study",
            "subject_code",
            "drug",
            "drug_other",
            "dose",
            "unit",
            "frequency",
            "start_date",
            "stop_date",
            "ongoing",
            "updated_at",
        ]


# Input -------------------------------------------------------------------------------------------------


class SubjectRef(serializers.Serializer):
    study = serializers.CharField(max_length=30, help_text="Study code.")
    subject_code = serializers.CharField(max_length=40)


class PatientCreateSerializer(SubjectRef):
    sex = serializers.ChoiceField(choices=Sex.choices)
    birth_year = serializers.IntegerField(min_value=1900, max_value=2100)
    diagnosis_date = serializers.DateField()
    classification_criteria = serializers.ChoiceField(choices=c.ClassificationCriteria.choices)
    consent_date = serializers.DateField(required=False, allow_null=True)
    refractory_to = serializers.ListField(child=serializers.ChoiceField(choices=c.Drug.choices), required=False)
    refractory_notes = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class PatientUpdateSerializer(serializers.Serializer):
    sex = serializers.ChoiceField(choices=Sex.choices, required=False)
    birth_year = serializers.IntegerField(min_value=1900, max_value=2100, required=False)
    diagnosis_date = serializers.DateField(required=False)
    classification_criteria = serializers.ChoiceField(choices=c.ClassificationCriteria.choices, required=False)
    consent_date = serializers.DateField(required=False, allow_null=True)
    refractory_to = serializers.ListField(child=serializers.ChoiceField(choices=c.Drug.choices), required=False)
    refractory_notes = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    reason = serializers.CharField(max_length=2000, help_text="Why the record changes (audit trail).")


class PatientStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=c.PatientStatus.choices)
    on_date = serializers.DateField()
    reason = serializers.CharField(max_length=2000)


class TransplantCreateSerializer(SubjectRef):
    lot_number = serializers.CharField(max_length=60)
    infused_at = OffsetDateTimeField(help_text="With its UTC offset, e.g. 2026-03-01T09:30:00+08:00.")
    infusion_number = serializers.IntegerField(min_value=1, max_value=100, required=False)
    weight_kg = serializers.DecimalField(max_digits=5, decimal_places=1)
    dose_cells_per_kg = serializers.IntegerField(min_value=1, max_value=10**12)
    route = serializers.ChoiceField(choices=c.Route.choices, required=False)
    duration_minutes = serializers.IntegerField(min_value=0, max_value=10000, required=False, allow_null=True)
    premedication = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    conditioning = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class MedicationCreateSerializer(SubjectRef):
    drug = serializers.ChoiceField(choices=c.Drug.choices)
    drug_other = TextField(required=False, allow_blank=True, max_length=100)
    dose = serializers.DecimalField(max_digits=9, decimal_places=3, min_value=0)
    unit = serializers.ChoiceField(choices=c.DoseUnit.choices)
    frequency = serializers.ChoiceField(choices=c.Frequency.choices)
    start_date = serializers.DateField()
    stop_date = serializers.DateField(required=False, allow_null=True)


class MedicationUpdateSerializer(serializers.Serializer):
    dose = serializers.DecimalField(max_digits=9, decimal_places=3, min_value=0, required=False)
    unit = serializers.ChoiceField(choices=c.DoseUnit.choices, required=False)
    frequency = serializers.ChoiceField(choices=c.Frequency.choices, required=False)
    start_date = serializers.DateField(required=False)
    stop_date = serializers.DateField(required=False, allow_null=True)
    reason = serializers.CharField(max_length=2000)
