"""Study exports: tidy CSV per domain with a data dictionary, CDISC SDTM datasets (CSV, XPT, Dataset-JSON,
define.xml) and an HL7 FHIR R4 bundle, built in the background into one zip with a manifest (files, row
counts, SHA-256), scoped to the sites in `ExportJob.site_ids` and holding pseudonymous codes only (no
free-text narratives, which cannot be vouched for). One module per concern; every name used outside the package is re-exported here, so callers write
`from reporting import exports` and `exports.export_job_request(...)` whichever module holds it.

- `jobs`: the job lifecycle: request and queue, queue again, build, scoping (`export_jobs_for_user`,
  `export_job_visible_to`) and the finished zip (`export_file`).
- `archive`: the zip itself: its CSV tables, the data dictionary and the manifest.
- `sources`: the site-scoped querysets every format reads.
- `tidy`: the tidy CSV tables.
- `sdtm`: the CDISC SDTM datasets (SDTMIG 3.4 order, EPOCH, --LOBXFL, ASCII values).
- `sdtm_terms`: the CDISC controlled terms, labels and core of the SDTM variables, epochs, ASCII.
- `sdtm_files`: each SDTM dataset as SAS V5 XPT and Dataset-JSON, and define.xml.
- `fhir`: the FHIR R4 bundle and its resources.
- `common`: what the formats share (zip members, columns, the build context, value formatting).
"""

from reporting.exports.archive import EXPORT_FORMAT_VERSION, TABLES
from reporting.exports.common import Context
from reporting.exports.fhir import _fhir_id
from reporting.exports.jobs import (
    QUEUE_GRACE,
    _queue,
    export_file,
    export_job_request,
    export_job_run,
    export_job_visible_to,
    export_jobs_for_user,
    export_jobs_resume,
)

__all__ = [
    "export_job_request",
    "export_job_run",
    "export_jobs_resume",
    "export_jobs_for_user",
    "export_job_visible_to",
    "export_file",
    "QUEUE_GRACE",
    "EXPORT_FORMAT_VERSION",
    "TABLES",
    "Context",
    "_queue",
    "_fhir_id",
]
