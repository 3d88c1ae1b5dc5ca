"""The export job lifecycle: the jobs a user may see, requesting an export (for the user's sites or the API
key's site) and queueing it once the request commits, queueing again the jobs nobody is building (lost by the
broker, or their worker died), and building a claimed job after checking the requester may still have it,
keeping the error on failure. The zip is built as a temporary file in EXPORT_DIR and renamed to
`<job id>.zip` only when complete, so a half-written file is never served; `export_file` gives it."""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from registry.models import ApiKey, Study, StudySite, user_site_ids
from reporting.constants import ExportState
from reporting.exports.archive import build_export_zip
from reporting.models import ExportJob

logger = logging.getLogger(__name__)

# A running job that has not moved for this long belongs to a worker that died; a redelivered task takes it.
BUILD_EXPORT_TASK = "reporting.tasks.build_export"
QUEUE_GRACE = dt.timedelta(minutes=5)
STALE_AFTER = dt.timedelta(hours=1)


# Scoping and requests ----------------------------------------------------------------------------------


def export_jobs_for_user(user):
    """The jobs whose every site is one of the user's sites (superusers: all)."""
    if not user or not user.is_authenticated or not user.is_active:
        return ExportJob.objects.none()
    if user.is_superuser:
        return ExportJob.objects.all()
    mine = set(user_site_ids(user).values_list("site_id", flat=True))
    if not mine:
        return ExportJob.objects.none()
    # site_ids is a JSON list (no portable containment lookup): jobs are few, so check them here.
    candidates = ExportJob.objects.filter(study__in=StudySite.objects.filter(site_id__in=mine).values("study_id"))
    ids = [pk for pk, site_ids in candidates.values_list("pk", "site_ids") if _sites_within(site_ids, mine)]
    return ExportJob.objects.filter(pk__in=ids)


def export_job_visible_to(job: ExportJob, user) -> bool:
    if not user or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return _sites_within(job.site_ids, set(user_site_ids(user).values_list("site_id", flat=True)))


def _sites_within(site_ids, allowed: set[int]) -> bool:
    return bool(site_ids) and all(isinstance(s, int) and s in allowed for s in site_ids)


def _study_site_ids(study: Study) -> set[int]:
    return set(StudySite.objects.filter(study=study).values_list("site_id", flat=True))


def export_job_request(*, study: Study, user=None, api_key: ApiKey | None = None) -> ExportJob:
    """Create an export of `study` for the user's sites (or the API key's site) and queue it on commit."""
    if (user is None) == (api_key is None):
        raise ValueError("Give the requesting user or the API key (one of them).")
    study_sites = _study_site_ids(study)
    if api_key is not None:
        site_ids = [api_key.site_id] if api_key.site_id in study_sites else []
    elif user.is_active and user.is_superuser:
        site_ids = sorted(study_sites)
    elif user.is_active:
        site_ids = sorted(study_sites & set(user_site_ids(user).values_list("site_id", flat=True)))
    else:
        site_ids = []
    if not site_ids:
        raise ValidationError(
            {"study": gettext("None of your sites takes part in study %(study)s.") % {"study": study.code}}
        )
    job = ExportJob(study=study, site_ids=site_ids, requested_by=user, requested_by_key=api_key)
    job.full_clean()
    job.save()
    transaction.on_commit(lambda: _queue(job.pk))
    return job


def _queue(job_id: int) -> None:
    """Hand the job to a worker. The task is sent by name, so this module never imports the tasks module
    (tasks import services; services do not import tasks), and a web process, which has not registered the
    worker's tasks, sends it all the same."""
    try:
        current_app.send_task(BUILD_EXPORT_TASK, args=[job_id])
    except Exception:  # the broker is unreachable: the job stays queued and `export_jobs_resume` queues it again
        logger.warning("Export %s could not be queued; it will be queued again", job_id, exc_info=True)


def export_jobs_resume(*, now: dt.datetime | None = None) -> list[int]:
    """Queue again every job nobody is building: queued for longer than QUEUE_GRACE (the broker lost or never
    got it) or running with no progress for STALE_AFTER (its worker died). A job is built once whatever the
    number of tasks, since `export_job_run` claims it atomically."""
    now = now or timezone.now()
    stalled = ExportJob.objects.filter(
        Q(state=ExportState.QUEUED, updated_at__lt=now - QUEUE_GRACE)
        | Q(state=ExportState.RUNNING, updated_at__lt=now - STALE_AFTER)
    )
    job_ids = list(stalled.order_by("pk").values_list("pk", flat=True))
    for job_id in job_ids:
        _queue(job_id)
    return job_ids


def export_file(job: ExportJob) -> Path | None:
    """The finished zip of `job`, or None when it is not ready (or was removed)."""
    if job.state != ExportState.DONE or not job.file_path:
        return None
    path = Path(job.file_path)
    return path if path.is_file() else None


def _still_allowed(job: ExportJob) -> str | None:
    """Why the requester may no longer have this export (None when they may): re-checked when it runs."""
    if job.requested_by_key_id is not None:
        key = job.requested_by_key
        if key.revoked_at is not None or key.expires_at <= timezone.now():
            return "The API key that requested the export was revoked or has expired."
        if job.site_ids != [key.site_id]:
            return "The export holds sites other than the API key's site."
        return None
    user = job.requested_by
    if user is None:
        return "Whoever requested the export (a person or an API key) no longer exists."
    if not user.is_active:
        return "The person who requested the export is no longer active."
    if not user.is_superuser and not _sites_within(
        job.site_ids, set(user_site_ids(user).values_list("site_id", flat=True))
    ):
        return "The person who requested the export no longer belongs to every site it holds."
    return None


# Running -----------------------------------------------------------------------------------------------


def export_job_run(*, job_id: int) -> ExportJob | None:
    """Build the export of a queued job (or of a running one whose worker died); keep the error on failure."""
    now = timezone.now()
    claimed = (
        ExportJob.objects.filter(pk=job_id)
        .filter(Q(state=ExportState.QUEUED) | Q(state=ExportState.RUNNING, updated_at__lt=now - STALE_AFTER))
        .update(state=ExportState.RUNNING, progress=0, error="", updated_at=now)
    )
    job = ExportJob.objects.select_related("study", "requested_by", "requested_by_key").filter(pk=job_id).first()
    if job is None or not claimed:
        return job  # gone, already done or failed, or another worker has it
    refused = _still_allowed(job)
    if refused:
        return _fail(job, refused)
    export_dir = Path(settings.EXPORT_DIR)
    tmp_name = None
    try:
        export_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=export_dir, prefix=f".{job.pk}-", suffix=".zip.part")
        os.close(fd)
        manifest = build_export_zip(job, Path(tmp_name))
        final = export_dir / f"{job.pk}.zip"
        os.replace(tmp_name, final)
        tmp_name = None
    except Exception as exc:
        logger.exception("Export %s failed", job.pk)
        return _fail(job, f"{exc.__class__.__name__}: {exc}")
    finally:
        if tmp_name and os.path.exists(tmp_name):
            os.unlink(tmp_name)
    ExportJob.objects.filter(pk=job.pk).update(
        state=ExportState.DONE, progress=100, file_path=str(final), manifest=manifest, updated_at=timezone.now()
    )
    job.refresh_from_db()
    return job


def _fail(job: ExportJob, error: str) -> ExportJob:
    ExportJob.objects.filter(pk=job.pk).update(state=ExportState.FAILED, error=error, updated_at=timezone.now())
    job.refresh_from_db()
    return job
