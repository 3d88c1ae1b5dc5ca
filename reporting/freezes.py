"""What a freeze keeps (`quality.services.freezes`): the study export of the freeze's sites, built at the
moment of the freeze with the freeze's id in its manifest, and the cohort report's CSV, each with its SHA-256."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.dispatch import receiver
from django.utils import timezone

from quality.models import Freeze
from quality.services.freezes import file_sha256, freeze_taken, sha256_of
from reporting.cohort import cohort_report
from reporting.constants import ExportState
from reporting.exports.archive import build_export_zip
from reporting.models import ExportJob
from reporting.rendering import render_csv


@receiver(freeze_taken, dispatch_uid="reporting.capture_freeze")
def freeze_capture(sender, freeze: Freeze, **kwargs) -> None:
    job = ExportJob.objects.create(
        study=freeze.study, site_ids=freeze.site_ids, requested_by=freeze.frozen_by, state=ExportState.RUNNING
    )
    directory = Path(settings.EXPORT_DIR) / "freezes"
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{freeze.pk}-", suffix=".zip.part")
    os.close(fd)
    try:
        manifest = build_export_zip(job, Path(tmp_name), freeze=freeze.pk)
        final = directory / f"freeze-{freeze.pk}.zip"
        os.replace(tmp_name, final)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    ExportJob.objects.filter(pk=job.pk).update(
        state=ExportState.DONE, progress=100, file_path=str(final), manifest=manifest, updated_at=timezone.now()
    )
    report = render_csv(cohort_report(study=freeze.study, site_ids=freeze.site_ids))
    freeze.export_path, freeze.export_sha256 = str(final), file_sha256(final)
    freeze.report_csv, freeze.report_sha256 = report, sha256_of(report.encode())
    freeze.save(update_fields=["export_path", "export_sha256", "report_csv", "report_sha256"])
