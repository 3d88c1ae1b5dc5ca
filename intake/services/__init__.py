"""Writes of the intake app: importing a cohort from spreadsheets (directly, or as a job run by a worker for the
admin), and the empty templates to fill."""

from intake.services.importing import ImportReport, Problem, cohort_import
from intake.services.jobs import (
    import_job_from_check,
    import_job_progress,
    import_job_request,
    import_job_run,
    import_jobs_for_user,
    import_jobs_resume,
    import_uploads_read,
)
from intake.services.templates import templates_write, workbook_template

__all__ = [
    "cohort_import",
    "ImportReport",
    "Problem",
    "import_job_from_check",
    "import_job_progress",
    "import_job_request",
    "import_uploads_read",
    "import_job_run",
    "import_jobs_for_user",
    "import_jobs_resume",
    "templates_write",
    "workbook_template",
]
