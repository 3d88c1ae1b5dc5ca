"""Export jobs and the cohort report's admin entry point.

The export table keeps the name it had when the model lived in the followup app (`Meta.db_table`).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext

from registry.models import Study
from reporting.constants import ExportState


class ExportJob(models.Model):
    """A study export (tidy CSV, SDTM-style datasets, FHIR bundle) built in the background as one zip.

    Scoped like everything else: the export holds only the sites in `site_ids` (the requester's sites, or
    the API key's site), and pseudonymous codes only.
    """

    study = models.ForeignKey("registry.Study", on_delete=models.PROTECT, related_name="exports")
    site_ids = models.JSONField(help_text="The sites whose data the export holds.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    requested_by_key = models.ForeignKey(
        "registry.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    state = models.CharField(max_length=10, choices=ExportState.choices, default=ExportState.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done.")
    file_path = models.CharField(max_length=500, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "followup_exportjob"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return gettext("Export of %(study)s (%(state)s)") % {
            "study": self.study.code,
            "state": self.get_state_display(),
        }


class CohortReport(Study):
    """A study seen through its cohort report (admin entry point; no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = "cohort report"
        verbose_name_plural = "cohort reports"
