"""Importing a centre's cohort from spreadsheets, through the services every other door uses
(docs/import.md).

`cohort_import` reads the files, then records every row with the patients and follow-up services inside one
transaction: patients, infusions (the first schedules the visits), visits with their results (in batches),
medications, adverse events, and last the patients' statuses. Each problem is kept with its file, row, column
and rule; at the end the transaction is rolled back when this is a preview (`dry_run`) or when any row has a
problem, and committed otherwise: all or nothing. A record already stored under its natural key (subject code,
infusion number, visit code; a medication's drug and start, an event's term and onset) is compared with its
row: the same values change nothing, other values are a correction, which needs the import's reason. Every
write is attributed to the door "import" and to the file's SHA-256.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.utils.translation import gettext

from core.api.problems import RecordLocked
from core.audit import Door, audit_context
from followup.models import AdverseEvent, Result, Visit
from followup.services import VisitEntry, ae_save, visit_record_unscheduled, visits_record_batch
from intake.constants import CHUNK_VISITS, COLUMNS, FIELD_COLUMNS, ORDER, SERIOUS, Kind
from intake.parsing import (
    CellError,
    blank,
    parse_date,
    parse_datetime,
    parse_decimal,
    parse_flag,
    parse_int,
    parse_list,
    text,
)
from intake.reading import FileError, Sheet, read_files
from intake.services import visits as v
from intake.tidy import from_tidy
from patients import constants as pc
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from patients.services import (
    local_date,
    medication_save,
    patient_change_status,
    patient_enroll,
    patient_update,
    transplant_correct,
    transplant_record,
)
from registry.models import CellProduct, Site, Study, StudySite, user_can_write_site

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Problem:
    file: str
    row: int | None
    column: str
    rule: str
    message: str


@dataclass
class ImportReport:
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)  # what was read and deliberately left as stored
    counts: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    files: dict[str, str] = field(default_factory=dict)  # file -> SHA-256
    written: bool = False
    committed_through: str | None = None  # with chunks: the last patient of the last chunk written
    resume_from: str | None = None  # with chunks: the first patient of the chunk that failed

    def count(self, kind: str, what: str) -> None:
        self.counts[kind][what] += 1

    @property
    def changes(self) -> int:
        return sum(n for kind in self.counts.values() for what, n in kind.items() if what != "unchanged")


class _Rollback(Exception):
    pass


def cohort_import(
    *,
    study: Study,
    files: list[tuple[str, bytes]],
    site: Site | None = None,
    actor=None,
    reason: str = "",
    dry_run: bool = False,
    progress: Progress | None = None,
    chunk_patients: int | None = None,
) -> ImportReport:
    """Check (`dry_run`) or import `files` ((name, content) pairs) into `study`, all or nothing.

    `chunk_patients`: a large import is checked whole first, then written in chunks of that many patients (all
    their rows in every file), each chunk all or nothing in its own transaction. A chunk that fails stops the
    import; `resume_from` names its first patient, and running the same import again resumes there, the
    chunks written before being recognised unchanged."""
    report = ImportReport()
    try:
        sheets = from_tidy(read_files(files))
    except FileError as exc:
        report.problems.append(Problem(str(exc).split(":")[0], None, "", "file", str(exc)))
        return report
    report.files = {sheet.file: sheet.sha256 for sheet in sheets}
    if not chunk_patients or dry_run:
        _import_sheets(sheets, study=study, site=site, actor=actor, reason=reason, report=report, progress=progress,
                       dry_run=dry_run)  # fmt: skip
        return report
    _import_sheets(sheets, study=study, site=site, actor=actor, reason=reason, report=report, progress=None,
                   dry_run=True)  # fmt: skip
    if report.problems:
        return report
    subjects = list(dict.fromkeys(text(cells.get("subject_code")) for sheet in sheets for _, cells in sheet.rows))
    total = ImportReport(files=report.files)
    for start in range(0, len(subjects), chunk_patients):
        chunk = set(subjects[start : start + chunk_patients])
        part = ImportReport(files=report.files)
        narrowed = [
            Sheet(s.file, s.kind, s.sha256, s.header, [r for r in s.rows if text(r[1].get("subject_code")) in chunk])
            for s in sheets
        ]
        _import_sheets(narrowed, study=study, site=site, actor=actor, reason=reason, report=part, progress=None,
                       dry_run=False)  # fmt: skip
        for kind, counts in part.counts.items():
            for what, n in counts.items():
                total.counts[kind][what] += n
        if part.problems:
            total.problems, total.resume_from = part.problems, subjects[start]
            break
        total.committed_through = subjects[min(start + chunk_patients, len(subjects)) - 1]
        if progress:
            progress("patients", min(start + chunk_patients, len(subjects)), len(subjects))
    total.written = total.committed_through is not None
    return total


def _import_sheets(sheets, *, study, site, actor, reason, report, progress, dry_run) -> None:
    run = _Run(study=study, site=site, actor=actor, reason=reason.strip(), report=report, progress=progress)
    try:
        with transaction.atomic():
            for kind in ORDER:
                for sheet in (s for s in sheets if s.kind == kind):
                    with audit_context(door=Door.IMPORT, actor=_attribution(actor, sheet), user=actor):
                        run.sheet(sheet)
            for sheet, number, cells in run.statuses:
                with audit_context(door=Door.IMPORT, actor=_attribution(actor, sheet), user=actor):
                    run.attempt(sheet, number, lambda s=sheet, c=cells: run.status(s, c))
            if dry_run or report.problems:
                raise _Rollback
    except _Rollback:
        pass
    else:
        report.written = True


def _attribution(actor, sheet: Sheet) -> str:
    name = actor.get_username() if actor is not None else "import"
    return f"{name} sha256:{sheet.sha256}"[:150]


class _Run:
    """One import: the study's records by natural key, loaded once and kept up to date as rows are written."""

    def __init__(self, *, study, site, actor, reason, report, progress):
        self.study, self.site, self.actor, self.reason = study, site, actor, reason
        self.report, self.progress = report, progress
        linked = Site.objects.filter(pk__in=StudySite.objects.filter(study=study).values("site_id"))
        self.sites = {s.code: s for s in linked}
        self.patients = {p.subject_code: p for p in Patient.objects.filter(study=study).select_related("site")}
        self.lots = {lot.lot_number: lot for lot in CellProduct.objects.filter(study=study)}
        self.statuses: list[tuple[Sheet, int, dict]] = []

    # Reporting ---------------------------------------------------------------------------------------

    def problem(self, sheet: Sheet, row: int | None, column: str, rule: str, message: str) -> None:
        self.report.problems.append(Problem(sheet.file, row, column, rule, message))

    def note(self, sheet: Sheet, row: int | None, column: str, rule: str, message: str) -> None:
        self.report.notes.append(Problem(sheet.file, row, column, rule, message))

    def attempt(self, sheet: Sheet, number: int, write: Callable[[], str | None]) -> None:
        """Run `write` for one row; its ValidationErrors and CellErrors become the row's problems; what it
        returns ("created", "changed", "unchanged") is counted."""
        try:
            outcome = write()
        except CellError as exc:
            self.problem(sheet, number, getattr(exc, "column", ""), exc.rule, exc.message)
        except ValidationError as exc:
            self.validation(sheet, number, exc, FIELD_COLUMNS.get(sheet.kind, {}))
        else:
            if outcome:
                self.report.count(sheet.kind, outcome)

    def validation(self, sheet: Sheet, number: int | None, exc: ValidationError, columns: dict[str, str]) -> None:
        locked = isinstance(exc, RecordLocked)
        errors = exc.error_dict.items() if hasattr(exc, "error_dict") else [(NON_FIELD_ERRORS, exc.error_list)]
        for name, items in errors:
            column = "" if name == NON_FIELD_ERRORS else columns.get(name, name)
            for item in items:
                rule = "locked" if locked else (item.code or name)
                for message in item.messages:
                    self.problem(sheet, number, column, rule, message)

    # Sheets ------------------------------------------------------------------------------------------

    def sheet(self, sheet: Sheet) -> None:
        names = {c.name for c in COLUMNS[sheet.kind] if c.required}
        missing = sorted(names - set(sheet.header))
        for name in missing:
            self.problem(
                sheet,
                1,
                name,
                "required",
                gettext("The column %(column)s is missing from the header.") % {"column": name},
            )
        if missing:
            return
        if sheet.kind == Kind.VISITS:
            self.visits(sheet)
            return
        write = {
            Kind.PATIENTS: self.patient,
            Kind.INFUSIONS: self.infusion,
            Kind.MEDICATIONS: self.medication,
            Kind.ADVERSE_EVENTS: self.adverse_event,
        }[sheet.kind]
        known = {c.name for c in COLUMNS[sheet.kind]}
        for column in sheet.header:
            if column and column not in known:
                self.problem(
                    sheet,
                    1,
                    column,
                    "unknown_column",
                    gettext("The column %(column)s is not one of %(kind)s's.") % {"column": column, "kind": sheet.kind},
                )
        for done, (number, cells) in enumerate(sheet.rows, start=1):
            self.attempt(sheet, number, lambda c=cells, n=number: write(sheet, n, c))
            if self.progress and (done % 50 == 0 or done == len(sheet.rows)):
                self.progress(sheet.file, done, len(sheet.rows))

    def required(self, cells: dict, *names: str) -> None:
        empty = [name for name in names if blank(cells.get(name))]
        if empty:
            raise ValidationError(
                {name: ValidationError(gettext("This column needs a value."), code="required") for name in empty}
            )

    def cell(self, column: str, parse, value, *args):
        try:
            return parse(value, *args)
        except CellError as exc:
            exc.column = column
            raise

    def patient_of(self, cells: dict) -> Patient:
        code = text(cells.get("subject_code"))
        patient = self.patients.get(code)
        if patient is None or not self.may_write(patient.site):
            raise ValidationError(
                {
                    "subject_code": ValidationError(
                        gettext("No patient %(code)s of study %(study)s at your sites (in this import or stored).")
                        % {"code": code, "study": self.study.code},
                        code="unknown_patient",
                    )
                }
            )
        return patient

    def may_write(self, site: Site) -> bool:
        if self.site is not None and site.pk != self.site.pk:
            return False
        return self.actor is None or user_can_write_site(self.actor, site.pk)

    def correction(self, what: str, changes: dict) -> None:
        if not self.reason:
            shown = ", ".join(sorted(changes))
            raise ValidationError(
                {
                    NON_FIELD_ERRORS: ValidationError(
                        gettext(
                            "%(what)s is stored with other values (%(fields)s); importing it again is a correction: "
                            "give the import a reason (--reason) or correct the row."
                        )
                        % {"what": what, "fields": shown},
                        code="correction_reason",
                    )
                }
            )

    # Patients ----------------------------------------------------------------------------------------

    def patient(self, sheet: Sheet, number: int, cells: dict) -> str:
        self.required(cells, "subject_code", "sex", "birth_year", "diagnosis_date", "classification_criteria")
        code = text(cells["subject_code"])
        site_code = text(cells.get("site")) or (self.site.code if self.site else "")
        site = self.sites.get(site_code)
        if site is None or (self.site is not None and site.pk != self.site.pk):
            taking = ", ".join(sorted(self.sites)) if self.site is None else self.site.code
            raise ValidationError(
                {
                    "site": ValidationError(
                        gettext("Site '%(site)s' is not one of %(sites)s for this import.")
                        % {"site": site_code, "sites": taking},
                        code="site",
                    )
                }
            )
        values = {
            "sex": text(cells["sex"]).upper(),
            "birth_year": self.cell("birth_year", parse_int, cells["birth_year"]),
            "diagnosis_date": self.cell("diagnosis_date", parse_date, cells["diagnosis_date"]),
            "classification_criteria": text(cells["classification_criteria"]).lower(),
            "consent_date": self.cell("consent_date", parse_date, cells.get("consent_date")),
            "refractory_to": [d.lower() for d in parse_list(cells.get("refractory_to"))],
            "refractory_notes": text(cells.get("refractory_notes")),
        }
        if not blank(cells.get("status")):
            self.statuses.append((sheet, number, cells))
        stored = self.patients.get(code)
        if stored is None:
            self.patients[code] = patient_enroll(
                study=self.study, site=site, subject_code=code, actor=self.actor, **values
            )
            self.patients[code].site = site
            return "created"
        self.patient_of({"subject_code": code})  # another site's patient is unknown here
        if stored.site_id != site.pk:
            raise ValidationError(
                {
                    "site": ValidationError(
                        gettext("Patient %(code)s is recorded at another site, not %(site)s.")
                        % {"code": code, "site": site.code},
                        code="site",
                    )
                }
            )
        changes = {name: value for name, value in values.items() if getattr(stored, name) != value}
        if not changes:
            return "unchanged"
        self.correction(gettext("Patient %(code)s") % {"code": code}, changes)
        patient_update(patient=stored, actor=self.actor, reason=self.reason, **changes)
        return "changed"

    def status(self, sheet: Sheet, cells: dict) -> str | None:
        patient = self.patient_of(cells)
        patient.refresh_from_db()
        status = text(cells.get("status")).lower()
        if status == patient.status or status in (pc.PatientStatus.SCREENING, pc.PatientStatus.ENROLLED):
            return None
        on = self.cell("status_date", parse_date, cells.get("status_date"))
        if on is None:
            raise ValidationError(
                {"status_date": ValidationError(gettext("Give the date of the status."), code="required")}
            )
        if patient.status != pc.PatientStatus.ENROLLED:
            self.correction(gettext("Patient %(code)s") % {"code": patient.subject_code}, {"status": status})
        patient_change_status(
            patient=patient, status=status, on_date=on, reason=text(cells.get("status_reason")), actor=self.actor
        )
        return None

    # Infusions ---------------------------------------------------------------------------------------

    def infusion(self, sheet: Sheet, number: int, cells: dict) -> str:
        self.required(cells, "subject_code", "infusion_number", "infused_at", "lot", "weight_kg", "dose_cells_per_kg")
        patient = self.patient_of(cells)
        lot = self.lots.get(text(cells["lot"]))
        if lot is None:
            raise ValidationError(
                {
                    "lot": ValidationError(
                        gettext("No lot %(lot)s in study %(study)s.")
                        % {"lot": text(cells["lot"]), "study": self.study.code},
                        code="unknown_lot",
                    )
                }
            )
        values = {
            "lot": lot,
            "infused_at": self.cell("infused_at", parse_datetime, cells["infused_at"], patient.site.time_zone),
            "weight_kg": self.cell("weight_kg", parse_decimal, cells["weight_kg"]),
            "dose_cells_per_kg": self.cell("dose_cells_per_kg", parse_int, cells["dose_cells_per_kg"]),
            "route": text(cells.get("route")).lower() or pc.Route.IV,
            "duration_minutes": self.cell("duration_minutes", parse_int, cells.get("duration_minutes")),
            "premedication": text(cells.get("premedication")),
            "conditioning": text(cells.get("conditioning")),
        }
        infusion_number = self.cell("infusion_number", parse_int, cells["infusion_number"])
        stored = TransplantEvent.objects.filter(patient=patient, infusion_number=infusion_number).first()
        if stored is None:
            transplant_record(patient=patient, infusion_number=infusion_number, actor=self.actor, **values)
            return "created"
        changes = {name: value for name, value in values.items() if getattr(stored, name) != value}
        if not changes:
            return "unchanged"
        self.correction(
            gettext("Infusion %(number)s of %(code)s") % {"number": infusion_number, "code": patient.subject_code},
            changes,
        )
        transplant_correct(transplant=stored, reason=self.reason, actor=self.actor, **changes)
        return "changed"

    # Visits ------------------------------------------------------------------------------------------

    def visits(self, sheet: Sheet) -> None:
        layout = v.layout_of(sheet.header)
        for column in layout.unknown:
            self.problem(
                sheet,
                1,
                column,
                "unknown_column",
                gettext("The column %(column)s is neither a visit column nor a result code.") % {"column": column},
            )
        patients = {p.pk: p for p in self.patients.values()}
        schedule: dict[int, list[Visit]] = defaultdict(list)
        for visit in Visit.objects.filter(patient_id__in=list(patients)).select_related("definition").order_by("pk"):
            schedule[visit.patient_id].append(visit)
        day_zero = {
            t.patient_id: local_date(t.infused_at, patients[t.patient_id].site)
            for t in TransplantEvent.objects.filter(patient_id__in=list(patients), infusion_number=1)
        }
        stored: dict[int, dict[str, Result]] = defaultdict(dict)
        for result in Result.objects.filter(visit__patient_id__in=list(patients)).order_by():
            stored[result.visit_id][result.code] = result
        batches: dict[int, list[tuple[int, str, str, VisitEntry, dict]]] = defaultdict(list)
        for number, cells in sheet.rows:
            self.attempt(
                sheet,
                number,
                lambda n=number, c=cells: self.visit_row(sheet, n, c, layout, schedule, day_zero, stored, batches),
            )
        total = sum(len(entries) for entries in batches.values())
        done = 0
        for site_id, entries in batches.items():
            site = next(p.site for p in patients.values() if p.site_id == site_id)
            for start in range(0, len(entries), CHUNK_VISITS):
                chunk = entries[start : start + CHUNK_VISITS]
                try:
                    visits_record_batch(
                        site=site, study_code=self.study.code, entries=[(s, code, e) for _, s, code, e, _ in chunk]
                    )
                except ValidationError as exc:
                    self.batch_problems(sheet, exc, chunk)
                else:
                    for *_, columns in chunk:
                        self.report.count(Kind.VISITS, columns["_outcome"])
                done += len(chunk)
                if self.progress:
                    self.progress(sheet.file, done, total)

    def visit_row(self, sheet, number, cells, layout, schedule, day_zero, stored, batches) -> str | None:
        self.required(cells, "subject_code", "visit_date")
        patient = self.patient_of(cells)
        row, errors = v.read_row(cells, layout)
        row.columns["_outcome"] = "created"
        on = self.cell("visit_date", parse_date, cells.get("visit_date"))
        for column, error in errors:
            self.problem(sheet, number, column, error.rule, error.message)
        if errors:
            return None
        code = text(cells.get("visit_code"))
        if v.new_unscheduled(schedule[patient.pk], code):
            return self.unscheduled_visit(patient, schedule[patient.pk], code, on, row, text(cells.get("visit_label")))
        visit = v.find_visit(schedule[patient.pk], code=code, day_zero=day_zero.get(patient.pk), on=on)
        for empty in sorted(row.empty):
            kept = stored[visit.pk].get(empty)
            if kept is not None and not kept.derived:
                self.note(
                    sheet,
                    number,
                    row.columns[empty],
                    "kept",
                    gettext(
                        "%(code)s of visit %(visit)s is stored (%(value)s %(unit)s) and the cell is empty: kept. "
                        'Write "remove" in the cell to remove it.'
                    )
                    % {"code": empty, "visit": visit.code, "value": kept.entered_value, "unit": kept.entered_unit},
                )
        deviation = text(cells.get("deviation_reason"))
        if v.unchanged(visit, stored[visit.pk], row=row, on=on, deviation=deviation):
            return "unchanged"
        correcting = visit.outcome not in (v.VisitOutcome.OPEN, v.VisitOutcome.IN_PROGRESS)
        if correcting:
            self.correction(
                gettext("Visit %(visit)s of %(code)s") % {"visit": visit.code, "code": patient.subject_code},
                {"values": True},
            )
            row.columns["_outcome"] = "changed"
        entry = VisitEntry(
            actual_date=on,
            results=row.results,
            sledai_items=row.items,
            deviation_reason=deviation,
            reason=self.reason if correcting or row.remove else "",
            remove=sorted(row.remove),
            status=row.status,
            not_done=row.not_done,
            version=visit.updated_at if correcting else None,
        )
        batches[patient.site_id].append((number, patient.subject_code, visit.code, entry, row.columns))
        return None

    def unscheduled_visit(self, patient, visits: list[Visit], code: str, on, row, label: str) -> str:
        """Add the patient's next unscheduled visit (U01, U02, ... in order, as the service numbers them) and
        record it; a code that skips one is refused, so that a second import finds each by its code."""
        expected = v.next_unscheduled_code(visits)
        if code.upper() != expected:
            raise ValidationError(
                {
                    "visit_code": gettext(
                        "Unscheduled visits are numbered in their order: %(code)s of %(patient)s would be added as "
                        "%(expected)s; give the patient's unscheduled visits in order from U01."
                    )
                    % {"code": code, "patient": patient.subject_code, "expected": expected}
                }
            )
        if row.not_done or row.remove or row.status != v.RecordStatus.COMPLETE:
            raise ValidationError(
                {"status": gettext("An unscheduled visit is imported complete, with the results it has.")}
            )
        visit = visit_record_unscheduled(
            patient=patient,
            actual_date=on,
            results=row.results,
            sledai_items=row.items,
            label=label or "Unscheduled visit",
            actor=self.actor,
        )
        visits.append(visit)
        return "created"

    def batch_problems(self, sheet: Sheet, exc: ValidationError, chunk: list) -> None:
        locked = isinstance(exc, RecordLocked)
        errors = exc.error_dict if hasattr(exc, "error_dict") else {NON_FIELD_ERRORS: exc.error_list}
        for key, items in errors.items():
            parts = key.split(".", 2)
            if len(parts) == 3 and parts[0] == "visits" and parts[1].isdigit():
                number, _, _, _, columns = chunk[int(parts[1])]
                column = columns.get(parts[2], FIELD_COLUMNS[Kind.VISITS].get(parts[2], parts[2]))
            else:
                number, column = None, ""
            for item in items:
                rule = "locked" if locked and "locked" in " ".join(item.messages).lower() else (item.code or parts[-1])
                for message in item.messages:
                    self.problem(sheet, number, column, rule, message)

    # Medications and adverse events ------------------------------------------------------------------

    def medication(self, sheet: Sheet, number: int, cells: dict) -> str:
        self.required(cells, "subject_code", "drug", "dose", "unit", "frequency", "start_date")
        patient = self.patient_of(cells)
        drug, drug_other = text(cells["drug"]).lower(), text(cells.get("drug_other"))
        start = self.cell("start_date", parse_date, cells["start_date"])
        stop = self.cell("stop_date", parse_date, cells.get("stop_date"))
        values = {
            "dose": self.cell("dose", parse_decimal, cells["dose"]),
            "unit": text(cells["unit"]),
            "frequency": text(cells["frequency"]).lower(),
            "stop_date": stop,
            "ongoing": stop is None,
        }
        stored = ConcomitantMedication.objects.filter(
            patient=patient, drug=drug, drug_other=drug_other, start_date=start
        ).first()
        if stored is None:
            medication = ConcomitantMedication(
                patient=patient, drug=drug, drug_other=drug_other, start_date=start, **values
            )
            medication_save(medication=medication, actor=self.actor)
            return "created"
        changes = {name: value for name, value in values.items() if getattr(stored, name) != value}
        if not changes:
            return "unchanged"
        self.correction(
            gettext("Medication %(drug)s of %(code)s from %(start)s")
            % {"drug": drug, "code": patient.subject_code, "start": start},
            changes,
        )
        for name, value in changes.items():
            setattr(stored, name, value)
        medication_save(medication=stored, actor=self.actor, reason=self.reason)
        return "changed"

    def adverse_event(self, sheet: Sheet, number: int, cells: dict) -> str:
        names = ("subject_code", "term", "category", "onset_date", "aware_date", "grade", "relatedness", "expected")
        self.required(cells, *names)
        patient = self.patient_of(cells)
        term = text(cells["term"])
        onset = self.cell("onset_date", parse_date, cells["onset_date"])
        serious = {name.lower() for name in parse_list(cells.get("serious"))}
        unknown = sorted(serious - SERIOUS.keys())
        if unknown:
            raise CellError(
                "serious",
                gettext("Unknown seriousness criteria %(given)s; use %(known)s.")
                % {"given": ", ".join(unknown), "known": ", ".join(SERIOUS)},
            )
        infusion = self.cell("infusion_number", parse_int, cells.get("infusion_number"))
        values = {
            "category": text(cells["category"]).lower(),
            "aware_date": self.cell("aware_date", parse_date, cells["aware_date"]),
            "resolution_date": self.cell("resolution_date", parse_date, cells.get("resolution_date")),
            "grade": self.cell("grade", parse_int, cells["grade"]),
            "relatedness": text(cells["relatedness"]).lower(),
            "expected": self.cell("expected", parse_flag, cells["expected"]),
            "description": text(cells.get("description")),
            "transplant": TransplantEvent.objects.filter(patient=patient, infusion_number=infusion).first()
            if infusion
            else None,
            **{name: key in serious for key, name in SERIOUS.items()},
        }
        for name, column in (("action_taken", "action_taken"), ("outcome", "outcome")):
            if not blank(cells.get(column)):
                values[name] = text(cells[column]).lower()
        if infusion and values["transplant"] is None:
            raise ValidationError(
                {
                    "transplant": ValidationError(
                        gettext("No infusion %(number)s of %(code)s.")
                        % {"number": infusion, "code": patient.subject_code},
                        code="unknown_infusion",
                    )
                }
            )
        stored = AdverseEvent.objects.filter(patient=patient, term=term, onset_date=onset).first()
        if stored is None:
            ae_save(ae=AdverseEvent(patient=patient, term=term, onset_date=onset, **values), actor=self.actor)
            return "created"
        changes = {name: value for name, value in values.items() if getattr(stored, name) != value}
        if not changes:
            return "unchanged"
        self.correction(
            gettext("Adverse event %(term)s of %(code)s on %(onset)s")
            % {"term": term, "code": patient.subject_code, "onset": onset},
            changes,
        )
        for name, value in changes.items():
            setattr(stored, name, value)
        ae_save(ae=stored, actor=self.actor, reason=self.reason)
        return "changed"
