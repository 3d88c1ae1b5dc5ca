"""Study exports over the partner API: request one for the key's site, follow it, download the zip.

A key sees only the jobs it requested; the export holds the key's site only. Requesting an export writes no
clinical data, so a read-only key may request one (it can already read every row the export holds).
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer, JSONRenderer

from core.api.idempotency import IDEMPOTENCY_HEADER, idempotent
from core.api.problems import problem
from core.api.serializers import ModelSerializer, valid
from registry.api.base import PartnerViewSet
from registry.models import Site, Study
from reporting import exports
from reporting.constants import ExportState
from reporting.models import ExportJob


class ExportJobSerializer(ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="code", read_only=True)
    sites = serializers.SerializerMethodField()
    manifest = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ExportJob
        fields = [
            "id",
            "study",
            "sites",
            "state",
            "progress",
            "error",
            "manifest",
            "download_url",
            "created_at",
            "updated_at",
        ]

    def get_sites(self, obj) -> list[str]:
        codes = self.context.get("site_codes") or {}
        return [codes.get(pk, str(pk)) for pk in obj.site_ids]

    @extend_schema_field({"type": "object", "nullable": True, "description": "Files, row counts and SHA-256 (done)."})
    def get_manifest(self, obj):
        return obj.manifest if obj.state == ExportState.DONE else None

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_download_url(self, obj):
        request = self.context.get("request")
        if obj.state != ExportState.DONE or request is None:
            return None
        return request.build_absolute_uri(f"/api/v1/exports/{obj.pk}/download/")


class ExportCreateSerializer(serializers.Serializer):
    study = serializers.CharField(max_length=30, help_text="Study code, e.g. MSCT-SLE.")


class ZipRenderer(BaseRenderer):
    media_type = "application/zip"
    format = "zip"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        # Only errors reach a renderer here (the zip itself is a FileResponse).
        return data if isinstance(data, bytes) else json.dumps(data).encode()


class ExportViewSet(PartnerViewSet):
    """The key's site's study exports: request (a read-write key), progress and download (any key of the site).

    One zip with a manifest. An export holds the key's site's data only.
    """

    serializer_class = ExportJobSerializer

    def base_queryset(self):
        return ExportJob.objects.select_related("study")

    def scoped(self, queryset):
        return queryset.filter(requested_by_key__site_id=self.site_id)

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if getattr(self, "swagger_fake_view", False):
            return context
        context["site_codes"] = dict(Site.objects.filter(pk=self.request.auth.site_id).values_list("pk", "code"))
        return context

    @extend_schema(
        request=ExportCreateSerializer,
        responses={202: ExportJobSerializer},
        parameters=[IDEMPOTENCY_HEADER],
    )
    @idempotent
    def create(self, request, *args, **kwargs):
        """Request an export of a study for the key's site; it is built in the background."""
        fields = valid(ExportCreateSerializer, request)
        study = Study.objects.for_sites([self.site_id]).filter(code=fields["study"]).first()
        if study is None:
            raise ValidationError({"study": f"Your site takes no part in a study {fields['study']}."})
        job = exports.export_job_request(study=study, api_key=request.auth)
        return self.respond(
            job, ExportJobSerializer, status.HTTP_202_ACCEPTED, headers={"Location": f"/api/v1/exports/{job.pk}/"}
        )

    @extend_schema(
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="The export zip."),
            (409, "application/problem+json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="The export is not ready (queued, running or failed)."
            ),
        }
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, ZipRenderer])
    def download(self, request, *args, **kwargs):
        """The finished export as one zip (manifest.json, tidy/, sdtm/, fhir/bundle.json, data_dictionary.csv)."""
        job = self.get_object()
        path = exports.export_file(job)
        if path is None:
            detail = (
                job.error if job.state == ExportState.FAILED else f"The export is {job.get_state_display().lower()}."
            )
            return problem(409, "The export is not ready.", detail, kind="export-not-ready")
        return FileResponse(
            path.open("rb"),
            as_attachment=True,
            filename=f"{job.study.code}-export-{job.pk}.zip",
            content_type="application/zip",
        )
