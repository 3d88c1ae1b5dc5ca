"""Import jobs: an import asked for in the admin is run by a worker, as the user who asked, with its progress
readable while it runs (docs/import.md, "In the admin").

`import_job_request` keeps the files and queues the job once the request commits; `import_job_run` claims a
queued job (or a running one whose worker died: the import is one transaction, so nothing of it was written,
and an import is idempotent anyway), runs `cohort_import` in the language of the request, and keeps the
report. The progress of a running import is kept in the "progress" cache (the import's own transaction hides
it from the database until the end); `import_job_progress` reads it. A check's files are kept for a day so
that `import_job_from_check` can import them without their being given again; an import's files are removed
when it has run. Two imports into one study at once both run: the one that meets a record the other has just
written runs again and finds it stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging

from celery import current_app
from django.core.cache import caches
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext, gettext_noop

from core.api.text import unstorable
from intake.constants import MAX_IMPORT_BYTES, ImportState
from intake.models import ImportFile, ImportJob
from intake.services.importing import ImportReport, cohort_import
from registry.models import Site, Study

logger = logging.getLogger(__name__)

RUN_IMPORT_TASK = "intake.tasks.run_import"
QUEUE_GRACE = dt.timedelta(minutes=5)
# A running job whose progress has not moved for this long belongs to a worker that died.
STALE_AFTER = dt.timedelta(minutes=10)
CHECK_FILES_KEPT = dt.timedelta(days=1)
PROGRESS_KEPT_SECONDS = 24 * 3600
# An import that meets a record another import of the study wrote meanwhile is run again, this many times in all.
IMPORT_ATTEMPTS = 3
# Why a job could not run, kept in the language of its request (translated by `_in_language`).
RACED = gettext_noop(
    "Another import into this study kept writing the same records at the same time; ask for this one again."
)
INACTIVE = gettext_noop("The person who asked for the import is no longer active.")
FILES_GONE = gettext_noop("The files of this import are no longer kept.")


def _progress_key(job_id: int) -> str:
    return f"intake:import-progress:{job_id}"


# Asking -------------------------------------------------------------------------------------------------


def import_uploads_read(uploads) -> list[tuple[str, bytes]]:
    """The (name, content) pairs of uploaded files (each with `name`, `size` and `read`), refused by their
    sizes before any is read into memory when they are larger than MAX_IMPORT_BYTES together."""
    if sum(upload.size for upload in uploads) > MAX_IMPORT_BYTES:
        raise ValidationError({"files": gettext("The files are larger than 50 MB together; import them in parts.")})
    return [(upload.name, upload.read()) for upload in uploads]


def import_job_request(
    *, study: Study, user, files: list[tuple[str, bytes]], site: Site | None = None, reason: str = "",
    dry_run: bool = True,
) -> ImportJob:  # fmt: skip
    """Keep `files` ((name, content) pairs) and queue their check or import into `study` as `user`."""
    if not files:
        raise ValidationError({"files": gettext("Choose the files to import.")})
    if sum(len(content) for _, content in files) > MAX_IMPORT_BYTES:
        raise ValidationError({"files": gettext("The files are larger than 50 MB together; import them in parts.")})
    name_length = ImportFile._meta.get_field("name").max_length
    if any(len(name) > name_length or unstorable(name) for name, _ in files):
        raise ValidationError(
            {"files": gettext("A file name may not be longer than 255 characters or hold a NUL character.")}
        )
    if unstorable(reason):
        raise ValidationError({"reason": gettext("The reason may not hold a NUL character.")})
    if site is not None and not Site.objects.for_user(user, write=True).filter(pk=site.pk, studies=study).exists():
        raise PermissionDenied
    _forget_old_check_files()
    job = ImportJob.objects.create(
        study=study,
        site=site,
        requested_by=user,
        dry_run=dry_run,
        reason=reason.strip(),
        language=translation.get_language() or "en",
        file_names=[name for name, _ in files],
    )
    ImportFile.objects.bulk_create(
        ImportFile(job=job, name=name, sha256=hashlib.sha256(content).hexdigest(), size=len(content), content=content)
        for name, content in files
    )
    transaction.on_commit(lambda: _queue(job.pk))
    return job


def import_job_from_check(*, check: ImportJob, user) -> ImportJob:
    """Import the files of a finished check that found no problem (once): the rules are applied again."""
    if check.requested_by_id != user.pk:
        raise PermissionDenied
    with transaction.atomic():
        check = ImportJob.objects.select_for_update().get(pk=check.pk)
        if not check.dry_run or check.state != ImportState.DONE or check.report.get("problems"):
            raise ValidationError(gettext("Only a finished check that found no problem can be imported."))
        if check.imported_as_id is not None:
            raise ValidationError(gettext("These files were already imported."))
        if not check.files.exists():
            raise ValidationError(gettext("The checked files are no longer kept; give them again."))
        job = ImportJob.objects.create(
            study=check.study,
            site=check.site,
            requested_by=user,
            dry_run=False,
            reason=check.reason,
            language=translation.get_language() or check.language,
            file_names=check.file_names,
        )
        check.files.update(job=job)
        check.imported_as = job
        check.save(update_fields=["imported_as", "updated_at"])
    transaction.on_commit(lambda: _queue(job.pk))
    return job


def _forget_old_check_files(*, now: dt.datetime | None = None) -> None:
    cutoff = (now or timezone.now()) - CHECK_FILES_KEPT
    ImportFile.objects.filter(job__dry_run=True, job__finished_at__lt=cutoff).delete()


def _queue(job_id: int) -> None:
    """Hand the job to a worker, sending the task by name (services never import tasks; a web process has
    not registered the worker's tasks)."""
    try:
        current_app.send_task(RUN_IMPORT_TASK, args=[job_id])
    except Exception:  # the broker is unreachable: the job stays queued and `import_jobs_resume` queues it again
        logger.warning("Import %s could not be queued; it will be queued again", job_id, exc_info=True)


def import_jobs_resume(*, now: dt.datetime | None = None) -> list[int]:
    """Queue again every job nobody is running: queued for longer than QUEUE_GRACE, or running with no
    progress for STALE_AFTER. A job runs once whatever the number of tasks (`import_job_run` claims it)."""
    now = now or timezone.now()
    candidates = ImportJob.objects.filter(
        Q(state=ImportState.QUEUED, updated_at__lt=now - QUEUE_GRACE)
        | Q(state=ImportState.RUNNING, updated_at__lt=now - STALE_AFTER)
    )
    job_ids = [pk for pk in candidates.order_by("pk").values_list("pk", flat=True) if not _moving(pk, now)]
    for job_id in job_ids:
        _queue(job_id)
    return job_ids


def _moving(job_id: int, now: dt.datetime) -> bool:
    seen = caches["progress"].get(_progress_key(job_id))
    return bool(seen) and dt.datetime.fromisoformat(seen["at"]) >= now - STALE_AFTER


# Running ------------------------------------------------------------------------------------------------


def import_job_run(*, job_id: int, now: dt.datetime | None = None) -> ImportJob | None:
    """Run a queued job (or a running one whose worker died) and keep its report, or its error."""
    now = now or timezone.now()
    stale = Q(state=ImportState.RUNNING, updated_at__lt=now - STALE_AFTER)
    if _moving(job_id, now):
        stale = Q(pk__in=[])
    claimed = (
        ImportJob.objects.filter(pk=job_id)
        .filter(Q(state=ImportState.QUEUED) | stale)
        .update(state=ImportState.RUNNING, error="", updated_at=now)
    )
    job = ImportJob.objects.select_related("study", "site", "requested_by").filter(pk=job_id).first()
    if job is None or not claimed:
        return job
    user = job.requested_by
    files = [(f.name, bytes(f.content)) for f in job.files.all()]
    if not user.is_active:
        return _finish(job, error=_in_language(job, INACTIVE))
    if not files:
        return _finish(job, error=_in_language(job, FILES_GONE))
    store = caches["progress"]

    def progress(file: str, done: int, total: int) -> None:
        store.set(
            _progress_key(job_id),
            {"file": file, "done": done, "total": total, "at": timezone.now().isoformat()},
            PROGRESS_KEPT_SECONDS,
        )

    progress(files[0][0], 0, 0)
    try:
        with translation.override(job.language):
            report = _import(job, files, progress)
    except Exception as exc:
        logger.exception("Import %s failed", job.pk)
        raced = f"{_in_language(job, RACED)} " if _met_another_import(exc) else ""
        return _finish(job, error=f"{raced}{exc.__class__.__name__}: {exc}")
    finally:
        store.delete(_progress_key(job_id))
    return _finish(job, report=report_as_data(report))


def _in_language(job: ImportJob, message: str) -> str:
    with translation.override(job.language):
        return gettext(message)


def _import(job: ImportJob, files: list[tuple[str, bytes]], progress) -> ImportReport:
    """`cohort_import` of the job's files. Two imports into a study at once each read its records before
    either writes; the one that then meets a record the other has just committed (a patient's subject code,
    an infusion's number: the unique constraints of patients/models.py), or deadlocks with the other writing
    the same patients in another order, is rolled back whole and run again, and now finds that record,
    unchanged or to be corrected like any stored one."""

    def run() -> ImportReport:
        return cohort_import(
            study=job.study,
            files=files,
            site=job.site,
            actor=job.requested_by,
            reason=job.reason,
            dry_run=job.dry_run,
            progress=progress,
        )

    for _ in range(IMPORT_ATTEMPTS - 1):
        try:
            return run()
        except (IntegrityError, OperationalError) as exc:
            if not _met_another_import(exc):
                raise
            logger.info("Import %s met a record written by another import; running it again", job.pk)
    return run()


def _met_another_import(exc: Exception) -> bool:
    """A unique record committed by another import meanwhile, or a deadlock with one writing the same records
    in another order (PostgreSQL's SQLSTATE 40P01: it rolls one of them back)."""
    if isinstance(exc, IntegrityError):
        return True
    return isinstance(exc, OperationalError) and getattr(exc.__cause__, "sqlstate", None) == "40P01"


def _finish(job: ImportJob, *, report: dict | None = None, error: str = "") -> ImportJob:
    state = ImportState.FAILED if error else ImportState.DONE
    now = timezone.now()
    if not job.dry_run:
        job.files.all().delete()
    ImportJob.objects.filter(pk=job.pk).update(
        state=state,
        report=_storable(report or {}),
        problem_count=len((report or {}).get("problems", [])),
        error=_storable(error),
        finished_at=now,
        updated_at=now,
    )
    job.refresh_from_db()
    return job


def _storable(value):
    """`value` with each NUL character replaced by U+FFFD: an error or report quoting one (an exception's
    message) would not be stored (PostgreSQL refuses it in text and in JSON), and the job would stay running."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


def report_as_data(report: ImportReport) -> dict:
    return {
        "problems": [
            {"file": p.file, "row": p.row, "column": p.column, "rule": p.rule, "message": p.message}
            for p in report.problems
        ],
        "notes": [
            {"file": p.file, "row": p.row, "column": p.column, "rule": p.rule, "message": p.message}
            for p in report.notes
        ],
        "counts": {kind: dict(sorted(counts.items())) for kind, counts in report.counts.items()},
        "files": dict(report.files),
        "written": report.written,
        "changes": report.changes,
    }


# Reading ------------------------------------------------------------------------------------------------


def import_jobs_for_user(user):
    """A user's own jobs: a report quotes the files it read, so it is shown to whoever gave them only."""
    if not user or not user.is_authenticated or not user.is_active:
        return ImportJob.objects.none()
    return ImportJob.objects.filter(requested_by=user)


def import_job_progress(job: ImportJob) -> dict:
    """What a page shows of a job: its state and, while it runs, the rows read of the file being read."""
    data = {
        "state": job.state,
        "state_label": job.get_state_display(),
        "finished": job.state in (ImportState.DONE, ImportState.FAILED),
        "file": "",
        "done": 0,
        "total": 0,
    }
    if job.state == ImportState.RUNNING:
        seen = caches["progress"].get(_progress_key(job.pk)) or {}
        data.update({k: seen[k] for k in ("file", "done", "total") if k in seen})
    return data
