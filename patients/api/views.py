from django.core.exceptions import ValidationError
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action

from core.api.etags import IF_MATCH_HEADER, check_if_match
from core.api.filters import UpdatedSinceFilter
from core.api.idempotency import IDEMPOTENCY_HEADER, idempotent
from core.api.serializers import valid
from patients import services
from patients.api.serializers import (
    MedicationCreateSerializer,
    MedicationSerializer,
    MedicationUpdateSerializer,
    PatientCreateSerializer,
    PatientSerializer,
    PatientStatusSerializer,
    PatientUpdateSerializer,
    TransplantCreateSerializer,
    TransplantSerializer,
)
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from registry.api.base import PartnerViewSet
from registry.models import CellProduct, Study


def resolve_patient(site_id: int, study_code: str, subject_code: str) -> Patient:
    """A patient of the caller's site by natural key; another site's patient is 'not found', like a typo."""
    patient = (
        Patient.objects.for_sites([site_id])
        .select_related("site", "study")
        .filter(study__code=study_code, subject_code=subject_code)
        .first()
    )
    if patient is None:
        raise ValidationError({"subject_code": f"No patient {subject_code} of study {study_code} at your site."})
    return patient


class PatientFilter(UpdatedSinceFilter):
    study = filters.CharFilter(field_name="study__code")

    class Meta:
        model = Patient
        fields = ["study", "status", "subject_code", "updated_since"]


class PatientViewSet(PartnerViewSet):
    """The key's site's patients: register, correct (with If-Match and a reason), change status."""

    serializer_class = PatientSerializer
    filterset_class = PatientFilter

    def base_queryset(self):
        return Patient.objects.select_related("study", "site")

    @extend_schema(request=PatientCreateSerializer, responses={201: PatientSerializer}, parameters=[IDEMPOTENCY_HEADER])
    @idempotent
    def create(self, request, *args, **kwargs):
        fields = valid(PatientCreateSerializer, request)
        study = Study.objects.for_sites([self.site_id]).filter(code=fields.pop("study")).first()
        if study is None:
            raise ValidationError({"study": "No study with this code takes part at your site."})
        patient = services.patient_enroll(
            study=study, site=request.auth.site, consent_date=fields.pop("consent_date", None), **fields
        )
        return self.respond(
            patient, PatientSerializer, status.HTTP_201_CREATED, headers={"Location": f"/api/v1/patients/{patient.pk}/"}
        )

    @extend_schema(request=PatientUpdateSerializer, responses={200: PatientSerializer}, parameters=[IF_MATCH_HEADER])
    def partial_update(self, request, *args, **kwargs):
        patient = self.get_object()
        refused = check_if_match(request, patient)
        if refused:
            return refused
        fields = valid(PatientUpdateSerializer, request)
        patient = services.patient_update(patient=patient, reason=fields.pop("reason"), **fields)
        return self.respond(patient, PatientSerializer)

    @extend_schema(request=PatientStatusSerializer, responses={200: PatientSerializer}, parameters=[IF_MATCH_HEADER])
    @action(detail=True, methods=["post"])
    def status(self, request, *args, **kwargs):
        """Change the patient's status (withdrawn, lost, deceased, completed): future visits are taken out."""
        patient = self.get_object()
        refused = check_if_match(request, patient)
        if refused:
            return refused
        fields = valid(PatientStatusSerializer, request)
        patient = services.patient_change_status(
            patient=patient, status=fields["status"], on_date=fields["on_date"], reason=fields["reason"]
        )
        return self.respond(patient, PatientSerializer)


class SubjectFilter(UpdatedSinceFilter):
    study = filters.CharFilter(field_name="patient__study__code")
    subject_code = filters.CharFilter(field_name="patient__subject_code")


class TransplantFilter(SubjectFilter):
    class Meta:
        model = TransplantEvent
        fields = ["study", "subject_code", "updated_since"]


class TransplantViewSet(PartnerViewSet):
    """Infusions of the key's site's patients; the first one schedules the follow-up visits."""

    serializer_class = TransplantSerializer
    filterset_class = TransplantFilter

    def base_queryset(self):
        return TransplantEvent.objects.select_related("patient__study", "lot")

    @extend_schema(
        request=TransplantCreateSerializer, responses={201: TransplantSerializer}, parameters=[IDEMPOTENCY_HEADER]
    )
    @idempotent
    def create(self, request, *args, **kwargs):
        fields = valid(TransplantCreateSerializer, request)
        patient = resolve_patient(self.site_id, fields.pop("study"), fields.pop("subject_code"))
        lot = CellProduct.objects.for_sites([self.site_id]).filter(lot_number=fields.pop("lot_number")).first()
        if lot is None:
            raise ValidationError({"lot_number": "No lot with this number is available to your site."})
        event = services.transplant_record(patient=patient, lot=lot, **fields)
        event = self.get_queryset().get(pk=event.pk)
        return self.respond(
            event,
            TransplantSerializer,
            status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/transplants/{event.pk}/"},
        )


class MedicationFilter(SubjectFilter):
    class Meta:
        model = ConcomitantMedication
        fields = ["study", "subject_code", "drug", "ongoing", "updated_since"]


class MedicationViewSet(PartnerViewSet):
    """Concomitant medications of the key's site's patients."""

    serializer_class = MedicationSerializer
    filterset_class = MedicationFilter

    def base_queryset(self):
        return ConcomitantMedication.objects.select_related("patient__study")

    @extend_schema(
        request=MedicationCreateSerializer, responses={201: MedicationSerializer}, parameters=[IDEMPOTENCY_HEADER]
    )
    @idempotent
    def create(self, request, *args, **kwargs):
        fields = valid(MedicationCreateSerializer, request)
        patient = resolve_patient(self.site_id, fields.pop("study"), fields.pop("subject_code"))
        medication = services.medication_record(patient=patient, **fields)
        medication = self.get_queryset().get(pk=medication.pk)
        return self.respond(
            medication,
            MedicationSerializer,
            status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/medications/{medication.pk}/"},
        )

    @extend_schema(
        request=MedicationUpdateSerializer, responses={200: MedicationSerializer}, parameters=[IF_MATCH_HEADER]
    )
    def partial_update(self, request, *args, **kwargs):
        medication = self.get_object()
        refused = check_if_match(request, medication)
        if refused:
            return refused
        fields = valid(MedicationUpdateSerializer, request)
        reason = fields.pop("reason")
        for name, value in fields.items():
            setattr(medication, name, value)
        if "stop_date" in fields:
            medication.ongoing = fields["stop_date"] is None
        medication = services.medication_save(medication=medication, reason=reason)
        return self.respond(self.get_queryset().get(pk=medication.pk), MedicationSerializer)
