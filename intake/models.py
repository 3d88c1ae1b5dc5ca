"""Import jobs: the admin's imports, run by a worker with their progress on the page. The import itself
writes through the patients and follow-up services; a study seen as an import target has no table."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from intake.constants import ImportState
from registry.models import Study


class CohortImport(Study):
    """A study seen as the target of an import (admin entry point; no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = _("import")
        verbose_name_plural = _("imports")


class ImportJob(models.Model):
    """One check (`dry_run`) or import of a set of files into a study, asked for in the admin and run by a
    worker as the user who asked. Seen by that user only (its report quotes the files' values)."""

    study = models.ForeignKey("registry.Study", on_delete=models.PROTECT, related_name="import_jobs")
    site = models.ForeignKey(
        "registry.Site",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The site of every patient, when chosen (otherwise each row's site column).",
    )
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    dry_run = models.BooleanField(help_text="A check: every row read through the rules, nothing written.")
    reason = models.TextField(blank=True, help_text="The reason for the corrections the import makes.")
    language = models.CharField(max_length=10, default="en", help_text="The language of the report.")
    state = models.CharField(max_length=10, choices=ImportState.choices, default=ImportState.QUEUED)
    report = models.JSONField(default=dict, blank=True)
    # What the list of a user's jobs shows, kept beside the report so that the list never reads the reports.
    file_names = models.JSONField(default=list, blank=True)
    problem_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    imported_as = models.OneToOneField(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="checked_by",
        help_text="The import made of this check's files.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("import job")
        verbose_name_plural = _("import jobs")

    def __str__(self) -> str:
        return f"Import {self.pk} into {self.study.code} ({self.state})"


class ImportFile(models.Model):
    """A file given to an import job, kept until the job has used it (an import) or for a day (a check, so
    that its files can be imported without giving them again)."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    content = models.BinaryField()

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.name
