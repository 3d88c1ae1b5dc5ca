import datetime as dt

from django import forms
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action

from core.api.filters import UpdatedSinceFilter
from core.api.idempotency import IDEMPOTENCY_HEADER, idempotent
from core.api.serializers import valid
from quality.api.serializers import QueryAnswerSerializer, QuerySerializer
from quality.constants import QueryState
from quality.models import Query
from quality.services.queries import RECORD_TYPES, query_answer
from registry.api.base import PartnerViewSet

MAX_AGE_DAYS = 36500  # a hundred years: older is no date the registry holds


class WholeDaysFilter(filters.NumberFilter):
    """A number of whole days: 2.5, a negative number or more than `MAX_AGE_DAYS` is refused (400) naming the
    parameter, never rounded or overflowing."""

    field_class = forms.IntegerField


class QueryFilter(UpdatedSinceFilter):
    state = filters.ChoiceFilter(choices=QueryState.choices)
    record_type = filters.ChoiceFilter(
        choices=[(name, name) for name in RECORD_TYPES], method="filter_record_type", help_text="The kind of record."
    )
    record_id = filters.NumberFilter(field_name="object_id", help_text="The record's id (with record_type).")
    min_age_days = WholeDaysFilter(
        method="filter_min_age",
        min_value=0,
        max_value=MAX_AGE_DAYS,
        help_text="Only queries raised at least this many whole days ago (0 to 36500).",
    )
    subject_code = filters.CharFilter(field_name="patient__subject_code")
    rule = filters.CharFilter(field_name="rule", help_text="An edit check's code; blank for queries raised by hand.")

    class Meta:
        model = Query
        fields = ["state", "record_type", "record_id", "min_age_days", "subject_code", "rule", "updated_since"]

    def filter_record_type(self, queryset, name, value):
        return queryset.filter(content_type=ContentType.objects.get_for_model(RECORD_TYPES[value]))

    def filter_min_age(self, queryset, name, value):
        return queryset.filter(created_at__lte=timezone.now() - dt.timedelta(days=value))


class QueryViewSet(PartnerViewSet):
    """The key's site's queries on its records: read them with their threads, and answer an open one. Raising,
    closing and re-opening are for the study's monitors and data managers, in the admin."""

    serializer_class = QuerySerializer
    filterset_class = QueryFilter

    def base_queryset(self):
        return Query.objects.select_related("study", "patient", "content_type").prefetch_related("messages")

    @extend_schema(request=QueryAnswerSerializer, responses={200: QuerySerializer}, parameters=[IDEMPOTENCY_HEADER])
    @action(detail=True, methods=["post"])
    @idempotent
    def answer(self, request, *args, **kwargs):
        """Answer an open query of the key's site (the query becomes "answered")."""
        query = query_answer(
            query=self.get_object(), text=valid(QueryAnswerSerializer, request)["text"], actor=request.auth
        )
        return self.respond(self.get_queryset().get(pk=query.pk), QuerySerializer)
