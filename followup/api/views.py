from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.etags import IF_MATCH_CORRECTION_HEADER, IF_MATCH_HEADER, check_if_match
from core.api.filters import UpdatedSinceFilter
from core.api.idempotency import IDEMPOTENCY_HEADER, idempotent
from core.api.serializers import valid
from followup import constants as c
from followup import services
from followup.api.serializers import (
    RESULT_ROW_FIELDS,
    AdverseEventCreateSerializer,
    AdverseEventSerializer,
    AdverseEventUpdateSerializer,
    OutcomeSerializer,
    ReportSubmissionSerializer,
    ResultSerializer,
    VisitBatchResultSerializer,
    VisitMissedSerializer,
    VisitRecordBatchSerializer,
    VisitRecordByKeySerializer,
    VisitRecordSerializer,
    VisitSerializer,
)
from followup.models import AdverseEvent, ComputedOutcome, Result, Visit
from patients.api.views import SubjectFilter, resolve_patient
from registry.api.base import PartnerViewSet


class VisitFilter(SubjectFilter):
    state = filters.ChoiceFilter(choices=c.VisitState.choices, help_text="Today's state at the site.")
    due_from = filters.DateFilter(
        field_name="window_end", lookup_expr="gte", help_text="Visits whose window ends on or after this date."
    )
    due_to = filters.DateFilter(
        field_name="window_start", lookup_expr="lte", help_text="Visits whose window opens on or before this date."
    )
    code = filters.CharFilter(field_name="code")

    class Meta:
        model = Visit
        fields = ["study", "subject_code", "code", "state", "due_from", "due_to", "updated_since"]


LIST_VISIT_FIELDS = (
    *(f.name for f in Visit._meta.concrete_fields),
    "definition__required_items",
    "patient__subject_code",
    "patient__site_id",
    "patient__study__code",
)


class VisitViewSet(PartnerViewSet):
    """The key's site's visits with their state today, results, and recording."""

    serializer_class = VisitSerializer
    filterset_class = VisitFilter

    def base_queryset(self):
        # Scoped to the key's site (`scoped`), whose time zone came with the key: today is one value.
        visits = Visit.objects.with_state(sites=[self.request.auth.site]).select_related("patient__study", "definition")
        if self.action == "list":
            # The page's results are attached as rows by `list`; of the patient and the study only what a
            # visit shows is read (a page is 100 visits: their patients' other columns cost more than the rest).
            return visits.only(*LIST_VISIT_FIELDS)
        return visits.prefetch_related(Prefetch("results", queryset=Result.objects.order_by("code")))

    def list(self, request, *args, **kwargs):
        # A page of visits; their results in one query as `.values()` rows rather than model instances
        # (no docstring: it would become the operation's description in the schema).
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        if page:
            rows: dict[int, list[dict]] = {visit.pk: [] for visit in page}
            for row in (
                Result.objects.filter(visit_id__in=list(rows)).order_by("code").values("visit_id", *RESULT_ROW_FIELDS)
            ):
                rows[row.pop("visit_id")].append(row)
            for visit in page:
                visit.result_rows = rows[visit.pk]
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @staticmethod
    def _entry(fields, version=None) -> services.VisitEntry:
        return services.VisitEntry(
            actual_date=fields["actual_date"],
            results={
                code: (r["value"], r.get("unit"), r.get("comparator"))
                for code, r in (fields.get("results") or {}).items()
            },
            sledai_items=fields.get("sledai_items"),
            deviation_reason=fields.get("deviation_reason", ""),
            remove=fields.get("remove", []),
            reason=fields.get("reason", ""),
            version=version or fields.get("version") or fields.get("updated_at"),
            status=fields.get("status", c.RecordStatus.COMPLETE),
            not_done=fields.get("not_done"),
        )

    def _record(self, visit, fields, if_match: str):
        entry = vars(self._entry(fields))
        entry["version"] = if_match  # the service compares it on the visit's locked row, for a correction
        return services.visit_record(visit=visit, **entry)

    @extend_schema(
        request=VisitRecordSerializer,
        responses={200: VisitSerializer},
        parameters=[IDEMPOTENCY_HEADER, IF_MATCH_CORRECTION_HEADER],
        operation_id="v1_visits_record",
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def record(self, request, *args, **kwargs):
        """Record the visit's date and results (all or nothing), completing it or leaving it in progress.
        Correcting a completed visit needs If-Match and a reason."""
        visit = self.get_object()
        fields = valid(VisitRecordSerializer, request)
        return self._recorded(self._record(visit, fields, request.headers.get("If-Match", "")))

    @extend_schema(
        request=VisitRecordByKeySerializer,
        responses={200: VisitSerializer},
        parameters=[IDEMPOTENCY_HEADER, IF_MATCH_CORRECTION_HEADER],
        operation_id="v1_visits_record_by_key",
    )
    @action(detail=False, methods=["post"], url_path="record")
    @idempotent
    def record_by_key(self, request, *args, **kwargs):
        """Record a visit named by study, subject code and visit code (an upsert of its results). Correcting a
        recorded visit needs If-Match and a reason, as for the visit by id."""
        fields = valid(VisitRecordByKeySerializer, request)
        visit = services.visit_record_by_key(
            site=request.auth.site,
            study_code=fields["study"],
            subject_code=fields["subject_code"],
            visit_code=fields["visit_code"],
            entry=self._entry(fields, request.headers.get("If-Match")),
        )
        return self._recorded(visit)

    def _recorded(self, visit):
        # The visit as `visit_record` stored it (its fields are the row's) and the results it stored (not read
        # back): its state follows from its outcome whatever the day.
        visit.state = c.VisitState(visit.outcome)
        visit.result_rows = [
            dict(zip(RESULT_ROW_FIELDS, (code, *visit.results_stored[code]), strict=True))
            for code in sorted(visit.results_stored)
        ]
        return self.respond(visit, VisitSerializer)

    @extend_schema(
        request=VisitRecordBatchSerializer,
        responses={200: VisitBatchResultSerializer},
        parameters=[IDEMPOTENCY_HEADER],
        operation_id="v1_visits_record_batch",
    )
    @action(detail=False, methods=["post"], url_path="record-batch")
    @idempotent
    def record_batch(self, request, *args, **kwargs):
        """Record many visits of one study at once (all or nothing), each as `visits/record/` would."""
        fields = valid(VisitRecordBatchSerializer, request)
        entries = [(item["subject_code"], item["visit_code"], self._entry(item)) for item in fields["visits"]]
        visits = services.visits_record_batch(site=request.auth.site, study_code=fields["study"], entries=entries)
        body = {
            "study": fields["study"],
            "recorded": len(visits),
            "visits": [
                {
                    "id": visit.pk,
                    "subject_code": visit.patient.subject_code,
                    "visit_code": visit.code,
                    "outcome": visit.outcome,
                    "actual_date": visit.actual_date,
                    "missing_items": visit.missing_items,
                    "updated_at": visit.updated_at,
                }
                for visit in visits
            ],
        }
        return Response(VisitBatchResultSerializer(body).data)

    @extend_schema(request=VisitMissedSerializer, responses={200: VisitSerializer}, parameters=[IDEMPOTENCY_HEADER])
    @action(detail=True, methods=["post"])
    @idempotent
    def missed(self, request, *args, **kwargs):
        """Confirm that the visit did not take place."""
        visit = services.visit_mark_missed(
            visit=self.get_object(), reason=valid(VisitMissedSerializer, request)["reason"]
        )
        return self.respond(self.get_queryset().get(pk=visit.pk), VisitSerializer)


class ResultFilter(UpdatedSinceFilter):
    study = filters.CharFilter(field_name="visit__patient__study__code")
    subject_code = filters.CharFilter(field_name="visit__patient__subject_code")
    visit_code = filters.CharFilter(field_name="visit__code")

    class Meta:
        model = Result
        fields = ["study", "subject_code", "visit_code", "code", "updated_since"]


class ResultViewSet(PartnerViewSet):
    """Every result of the key's site's visits, in canonical units."""

    serializer_class = ResultSerializer
    filterset_class = ResultFilter

    def base_queryset(self):
        return Result.objects.select_related("visit__patient")


class OutcomeFilter(filters.FilterSet):
    study = filters.CharFilter(field_name="visit__patient__study__code")
    subject_code = filters.CharFilter(field_name="visit__patient__subject_code")

    class Meta:
        model = ComputedOutcome
        fields = ["study", "subject_code", "remission", "flare", "relapse"]


class OutcomeViewSet(PartnerViewSet):
    """Outcomes the registry computed at each post-transplant visit (read only)."""

    serializer_class = OutcomeSerializer
    filterset_class = OutcomeFilter

    class pagination_class(PartnerViewSet.pagination_class):  # noqa: N801
        ordering = ("computed_at", "id")

    def base_queryset(self):
        return ComputedOutcome.objects.select_related("visit__patient")


class AdverseEventFilter(SubjectFilter):
    class Meta:
        model = AdverseEvent
        fields = ["study", "subject_code", "category", "grade", "updated_since"]


class AdverseEventViewSet(PartnerViewSet):
    """Adverse events of the key's site's patients, with the expedited-reporting due dates."""

    serializer_class = AdverseEventSerializer
    filterset_class = AdverseEventFilter

    def base_queryset(self):
        return AdverseEvent.objects.select_related("patient__study", "transplant")

    @extend_schema(
        request=AdverseEventCreateSerializer, responses={201: AdverseEventSerializer}, parameters=[IDEMPOTENCY_HEADER]
    )
    @idempotent
    def create(self, request, *args, **kwargs):
        fields = valid(AdverseEventCreateSerializer, request)
        patient = resolve_patient(self.site_id, fields.pop("study"), fields.pop("subject_code"))
        number = fields.pop("infusion_number", None)
        transplant = None
        if number is not None:
            transplant = patient.transplants.filter(infusion_number=number).first()
            if transplant is None:
                raise ValidationError({"infusion_number": f"Patient {patient.subject_code} has no infusion {number}."})
        ae = services.ae_record(patient=patient, transplant=transplant, **fields)
        return self.respond(
            self.get_queryset().get(pk=ae.pk),
            AdverseEventSerializer,
            status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/adverse-events/{ae.pk}/"},
        )

    @extend_schema(
        request=AdverseEventUpdateSerializer, responses={200: AdverseEventSerializer}, parameters=[IF_MATCH_HEADER]
    )
    def partial_update(self, request, *args, **kwargs):
        ae = self.get_object()
        refused = check_if_match(request, ae)
        if refused:
            return refused
        fields = valid(AdverseEventUpdateSerializer, request, partial=True)
        reason = fields.pop("reason", "")
        for name, value in fields.items():
            setattr(ae, name, value)
        ae = services.ae_save(ae=ae, reason=reason)
        return self.respond(self.get_queryset().get(pk=ae.pk), AdverseEventSerializer)

    @extend_schema(
        request=ReportSubmissionSerializer, responses={200: AdverseEventSerializer}, parameters=[IDEMPOTENCY_HEADER]
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def submissions(self, request, *args, **kwargs):
        """Record that the initial or complete expedited report was submitted."""
        fields = valid(ReportSubmissionSerializer, request)
        ae = services.ae_record_submission(ae=self.get_object(), report=fields["report"], on_date=fields["on_date"])
        return self.respond(self.get_queryset().get(pk=ae.pk), AdverseEventSerializer)
