"""GET /api/v1/reports/<study>/: the cohort report of a study for the key's site."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from registry.api.base import PartnerViewSet
from registry.constants import TissueSource
from registry.models import Study
from reporting.cohort import cohort_report
from reporting.rendering import parse_filter


class CohortReportSerializer(serializers.Serializer):
    """The report's sections (see the cohort report documentation); values are numbers, dicts and lists."""

    report_version = serializers.CharField()
    outcome_algorithm = serializers.CharField()
    generated_at = serializers.DateTimeField()
    study = serializers.DictField()
    filter = serializers.DictField()
    n_patients = serializers.IntegerField()
    baseline = serializers.DictField()
    time_points = serializers.ListField(child=serializers.DictField())
    responses = serializers.DictField()
    survival = serializers.DictField()
    comparison = serializers.DictField()
    adverse_events = serializers.DictField()
    cell_sources = serializers.DictField()


class CohortReportViewSet(PartnerViewSet):
    """The cohort report of a study for the key's site (JSON), with the same filters as the admin page."""

    lookup_field = "code"
    lookup_url_kwarg = "study"
    serializer_class = CohortReportSerializer
    pagination_class = None
    filter_backends = []

    def base_queryset(self):
        return Study.objects.all()

    @extend_schema(
        parameters=[
            OpenApiParameter("cell_source", str, enum=TissueSource.values, required=False),
            OpenApiParameter("infusions", str, enum=["single", "double"], required=False),
            OpenApiParameter("enrolled_from", OpenApiTypes.DATE, required=False),
            OpenApiParameter("enrolled_to", OpenApiTypes.DATE, required=False),
            OpenApiParameter("compare", str, enum=["cell_source", "infusions"], required=False),
        ],
        responses={200: CohortReportSerializer},
    )
    def retrieve(self, request, *args, **kwargs):
        study = self.get_object()
        flt = parse_filter(request.query_params)
        flt.site_codes = []  # a key sees its own site only
        return Response(cohort_report(study=study, site_ids=[self.site_id], flt=flt))
