"""The zip of one export: the CSV tables it holds (tidy, then SDTM, each SDTM dataset followed by its SAS V5
XPT and Dataset-JSON files, then define.xml) and the data dictionary of their columns, each written row by
row straight into its entry, then the FHIR bundle and `manifest.json` (format, study, sites, standards, and
the rows, bytes and SHA-256 of every file), moving the job's progress and heartbeat on as the members are
written."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext

from core.spreadsheets import SpreadsheetSafeWriter
from registry.models import Site
from reporting.exports.common import HEARTBEAT_ROWS, Column, Context, Table, _Member
from reporting.exports.fhir import FHIR_VERSION, write_fhir_bundle
from reporting.exports.sdtm import SDTM_TABLES
from reporting.exports.sdtm_files import write_define, write_sdtm_files
from reporting.exports.tidy import TIDY_TABLES
from reporting.models import ExportJob

EXPORT_FORMAT = "msct-registry-export"
EXPORT_FORMAT_VERSION = "1.0"


# Members -----------------------------------------------------------------------------------------------

TABLES: list[Table] = [*TIDY_TABLES, *SDTM_TABLES]

DICTIONARY_COLUMNS = [
    Column("file", "string", "Member of the zip the column belongs to."),
    Column("column", "string", "Column name."),
    Column("position", "integer", "Position of the column in the file (1 = first)."),
    Column("type", "string", "Type.", values="string; integer; decimal; date; datetime; flag (1/0)"),
    Column("unit", "string", "Unit, where the column has a fixed one."),
    Column("description", "string", "What the column holds."),
    Column("values", "string", "Allowed values (code=label), where the column is coded."),
    Column("file_description", "string", "What one row of the file is."),
]


def _dictionary_rows(ctx: Context) -> Iterator[tuple]:
    for table in [*TABLES, DICTIONARY]:
        for position, col in enumerate(table.columns, start=1):
            kind = "flag (1/0)" if col.kind == "flag" else col.kind
            yield (table.name, col.name, position, kind, col.unit, col.description, col.values, table.description)


DICTIONARY = Table("data_dictionary.csv", "One row per column of every CSV file.", DICTIONARY_COLUMNS, _dictionary_rows)


# Writing the zip ---------------------------------------------------------------------------------------


@dataclass
class _Progress:
    job_id: int
    steps: int
    done: int = 0

    def step(self) -> None:
        self.done += 1
        percent = min(99, int(self.done * 100 / self.steps))
        ExportJob.objects.filter(pk=self.job_id).update(progress=percent, updated_at=timezone.now())

    def beat(self) -> None:
        ExportJob.objects.filter(pk=self.job_id).update(updated_at=timezone.now())


def _write_csv(zf: zipfile.ZipFile, table: Table, ctx: Context, kept: list | None = None) -> dict:
    """Write `table` as CSV; the rows are also appended to `kept` when given (the SDTM datasets, whose XPT
    and Dataset-JSON files are written from the same rows)."""
    with _Member(table.name, zf) as member:
        writer = SpreadsheetSafeWriter(member.text, lineterminator="\n")
        writer.writerow([col.name for col in table.columns])
        for row in table.rows(ctx):
            writer.writerow(row)
            if kept is not None:
                kept.append(row)
            member.rows += 1
            if member.rows % HEARTBEAT_ROWS == 0:
                ctx.heartbeat()
    return member.record


def build_export_zip(job: ExportJob, path: Path, *, freeze: int | None = None) -> dict:
    """Write the whole export of `job` to `path` (a zip) and return its manifest (naming the freeze it was
    captured for, if any)."""
    site_ids = sorted(job.site_ids)
    sites = {s.pk: s for s in Site.objects.filter(pk__in=site_ids)}
    if set(sites) != set(site_ids):
        raise ValidationError(gettext("The export names a site that no longer exists."))
    progress = _Progress(job.pk, steps=len(TABLES) + 2)
    ctx = Context(
        job=job, study=job.study, site_ids=site_ids, sites=sites, generated_at=timezone.now(), heartbeat=progress.beat
    )
    files = []
    delivered = []  # the SDTM datasets with records: a submission holds no empty dataset
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for table in TABLES:
            if table in SDTM_TABLES:
                rows: list[tuple] = []
                files.append(_write_csv(zf, table, ctx, kept=rows))
                if rows:
                    files.extend(write_sdtm_files(zf, table, rows, ctx))
                    delivered.append(table)
            else:
                files.append(_write_csv(zf, table, ctx))
            progress.step()
        files.append(write_define(zf, ctx, delivered))
        files.append(_write_csv(zf, DICTIONARY, ctx))
        progress.step()
        files.append(write_fhir_bundle(zf, ctx))
        progress.step()
        manifest = {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "job": job.pk,
            "generated_at": ctx.generated_at.isoformat(),
            "study": {
                "code": ctx.study.code,
                "registration_id": ctx.study.registration_id,
                "title": ctx.study.title,
            },
            "sites": [sites[s].code for s in site_ids],
            "fhir_version": FHIR_VERSION,
            "standards": {
                "sdtm": (
                    "CDISC SDTMIG 3.4 datasets as CSV, SAS V5 XPT and Dataset-JSON 1.1, described by define.xml"
                    " (Define-XML 2.1); CDISC CT 2024-03-29; USUBJID = STUDYID-SUBJID"
                ),
                "fhir": f"HL7 FHIR R4 ({FHIR_VERSION}); Bundle type collection",
                "loinc": "Observation.code and LBLOINC carry LOINC where the results catalogue has one",
            },
            "files": files,
        }
        if freeze is not None:
            manifest["freeze"] = freeze
        with zf.open("manifest.json", "w") as entry:
            entry.write(json.dumps(manifest, indent=2).encode())
    return manifest
