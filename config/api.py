"""The partner API, version 1: every endpoint, one router."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from core.api.problems import not_found
from followup.api.views import AdverseEventViewSet, OutcomeViewSet, ResultViewSet, VisitViewSet
from patients.api.views import MedicationViewSet, PatientViewSet, TransplantViewSet
from quality.api.views import QueryViewSet
from registry.api.views import LotViewSet, SiteViewSet, StudyViewSet
from reporting.api.exports import ExportViewSet
from reporting.api.reports import CohortReportViewSet

router = SimpleRouter()
router.register("studies", StudyViewSet, basename="study")
router.register("sites", SiteViewSet, basename="site")
router.register("lots", LotViewSet, basename="lot")
router.register("patients", PatientViewSet, basename="patient")
router.register("transplants", TransplantViewSet, basename="transplant")
router.register("medications", MedicationViewSet, basename="medication")
router.register("visits", VisitViewSet, basename="visit")
router.register("results", ResultViewSet, basename="result")
router.register("outcomes", OutcomeViewSet, basename="outcome")
router.register("adverse-events", AdverseEventViewSet, basename="adverse-event")
router.register("exports", ExportViewSet, basename="export")
router.register("queries", QueryViewSet, basename="query")

urlpatterns = [
    path("v1/", include(router.urls)),
    path("v1/reports/<str:study>/", CohortReportViewSet.as_view({"get": "retrieve"}), name="report-detail"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^", not_found),  # anything else under /api/: a problem, in DEBUG too
]
