"""The tidy CSV tables, one per domain (patients, infusions, visits, results, outcomes and their changes
from baseline, concomitant medications, adverse events): the columns of each, described for the data
dictionary, and its rows, one per record, with dates local to the site and study days counted from the first
infusion (day 0)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from followup import constants as c
from followup import outcomes as o
from followup.catalogue import ANALYTES, SLEDAI_ITEMS
from patients import constants as pc
from patients.models import ConcomitantMedication, TransplantEvent
from quality.models import RecordKind
from registry import constants as rc
from reporting.exports.common import (
    CELL_TYPE,
    SERIOUS_FIELDS,
    Column,
    Context,
    Table,
    _choices,
    _date,
    _num,
    _s,
    _sequence,
)
from reporting.exports.sources import (
    _ae_rows,
    _count_infusions,
    _first_infusion,
    _outcome_rows,
    _patients,
    _quality,
    _result_queries,
    _results,
    _stream,
    _visits,
    _yes,
)

# Value formatting --------------------------------------------------------------------------------------


def _flag(value) -> str | int:
    return "" if value is None else int(bool(value))


def _day(on: dt.date | None, day_zero: dt.date | None) -> str | int:
    """Day since the first infusion (day 0 = the day of the first infusion, the registry's convention)."""
    return (on - day_zero).days if on and day_zero else ""


def _quality_columns(queried: str, verified: str, signed: str) -> list[Column]:
    return [
        Column(
            "open_queries", "integer", f"Open or answered (not yet closed) data clarification queries on {queried}."
        ),
        Column(
            "source_verified", "string", f"Y = {verified} is verified against source, unchanged since.", values="Y; N"
        ),
        Column("signed", "string", f"Y = an investigator signed {signed} (signature not voided).", values="Y; N"),
    ]


QUALITY_FIELDS = ("dq_open_queries", "dq_verified", "dq_signed")


def _quality_values(values: tuple) -> tuple:
    open_queries, verified, signed = values
    return (open_queries, _yes(verified), _yes(signed))


# Tidy CSV ----------------------------------------------------------------------------------------------

STUDY = Column("study", "string", "Study code.")
SITE = Column("site", "string", "Site code.")
SUBJECT = Column("subject", "string", "Pseudonymous subject code, unique within the study (read it as text).")
VISIT = Column("visit", "string", "Visit code (BL, D7, M1, ... from the study's template; U01, U02, ... unscheduled).")
VISIT_DATE = Column("date", "date", "Date the visit took place (ISO 8601).")
STUDY_DAY = Column("study_day", "integer", "Days since the first infusion (day 0 = the day of the first infusion).")
ANALYTE_CODES = "; ".join(f"{a.code}={a.label} [{a.unit}]" for a in ANALYTES.values())


def _tidy_patients(ctx: Context) -> Iterator[tuple]:
    qs = (
        _patients(ctx)
        .annotate(day0_at=_first_infusion("pk"), n_infusions=_count_infusions("pk"), **_quality(RecordKind.PATIENT))
        .order_by("subject_code")
        .values_list(
            "site_id",
            "subject_code",
            "sex",
            "birth_year",
            "diagnosis_date",
            "classification_criteria",
            "refractory_to",
            "consent_date",
            "status",
            "status_date",
            "day0_at",
            "n_infusions",
            *QUALITY_FIELDS,
        )
    )
    for row in _stream(qs):
        site, subject, sex, birth, diag, criteria, refractory, consent, status, status_date, day0_at, n = row[:12]
        yield (
            ctx.study.code,
            ctx.site_code(site),
            subject,
            sex,
            birth,
            _date(diag),
            criteria,
            ";".join(refractory or []),
            _date(consent),
            status,
            _date(status_date),
            _date(ctx.local_date(day0_at, site)),
            n or 0,
            *_quality_values(row[12:]),
        )


PATIENT_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    Column("sex", "string", "Sex.", values=_choices(rc.Sex.choices)),
    Column("birth_year", "integer", "Year of birth (only the year is kept)."),
    Column("diagnosis_date", "date", "Date of SLE diagnosis."),
    Column(
        "classification_criteria",
        "string",
        "Classification criteria met.",
        values=_choices(pc.ClassificationCriteria.choices),
    ),
    Column(
        "refractory_to", "string", "Therapies that failed, ';'-separated drug codes.", values=_choices(pc.Drug.choices)
    ),
    Column("consent_date", "date", "Date of informed consent."),
    Column("status", "string", "Current status.", values=_choices(pc.PatientStatus.choices)),
    Column("status_date", "date", "Date the current status began (death date for deceased)."),
    Column("day_zero", "date", "Day 0 of follow-up: local date of the first infusion."),
    Column("infusions", "integer", "Number of MSC infusions recorded."),
    *_quality_columns("the patient", "the patient's baseline form", "the patient's whole casebook"),
]


def _tidy_infusions(ctx: Context) -> Iterator[tuple]:
    qs = (
        TransplantEvent.objects.for_sites(ctx.site_ids)
        .filter(patient__study_id=ctx.study.pk)
        .annotate(day0_at=_first_infusion("patient_id"))
        .order_by("patient__subject_code", "infusion_number")
        .values_list(
            "patient__site_id",
            "patient__subject_code",
            "infusion_number",
            "infused_at",
            "day0_at",
            "lot__lot_number",
            "lot__tissue_source",
            "lot__origin",
            "lot__passage_number",
            "weight_kg",
            "dose_cells_per_kg",
            "total_cells",
            "route",
            "duration_minutes",
            "premedication",
            "conditioning",
        )
    )
    for row in _stream(qs):
        site, subject, number, at, day0_at, lot, tissue, origin, passage, weight, dose, total, route, minutes = row[:14]
        local = at.astimezone(ctx.zone(site))
        yield (
            ctx.study.code,
            ctx.site_code(site),
            subject,
            number,
            local.date().isoformat(),
            local.isoformat(timespec="minutes"),
            _day(local.date(), ctx.local_date(day0_at, site)),
            lot,
            CELL_TYPE.get(tissue, "MSC"),
            tissue,
            origin,
            passage,
            _num(weight),
            dose,
            total,
            route,
            _num(minutes),
            row[14],
            row[15],
        )


INFUSION_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    Column("infusion_number", "integer", "Infusion number within the course (1 = first; 2 = second of a double MSCT)."),
    Column("infusion_date", "date", "Local date of the infusion at the site."),
    Column("infused_at", "datetime", "Local date and time of the infusion with the site's UTC offset (ISO 8601)."),
    STUDY_DAY,
    Column("lot", "string", "Cell product lot number."),
    Column("cell_type", "string", "MSC type from the lot's tissue source.", values="UC-MSC; BM-MSC; AD-MSC; MSC"),
    Column("tissue_source", "string", "Tissue source of the lot.", values=_choices(rc.TissueSource.choices)),
    Column("origin", "string", "Allogeneic or autologous.", values=_choices(rc.ProductOrigin.choices)),
    Column("passage_number", "integer", "Passage number of the lot."),
    Column("weight_kg", "decimal", "Body weight at infusion.", unit="kg"),
    Column("dose_cells_per_kg", "integer", "Dose.", unit="cells/kg"),
    Column("total_cells", "integer", "Total cells infused (dose x weight).", unit="cells"),
    Column("route", "string", "Route.", values=_choices(pc.Route.choices)),
    Column("duration_minutes", "integer", "Duration of the infusion.", unit="min"),
    Column("premedication", "string", "Premedication given."),
    Column("conditioning", "string", "Conditioning, e.g. cyclophosphamide 1.0 g IV 24 h before."),
]


def _tidy_visits(ctx: Context) -> Iterator[tuple]:
    qs = (
        _visits(ctx)
        .with_state(ctx.generated_at)
        .annotate(day0_at=_first_infusion("patient_id"), **_quality(RecordKind.VISIT))
        .order_by("patient__subject_code", "target_date", "code")
        .values_list(
            "patient__site_id",
            "patient__subject_code",
            "code",
            "label",
            "definition_id",
            "target_date",
            "window_start",
            "window_end",
            "outcome",
            "state",
            "actual_date",
            "day0_at",
            "sledai_items",
            "deviation_reason",
            *QUALITY_FIELDS,
        )
    )
    for row in _stream(qs):
        site, subject, code, label, definition, target, start, end, outcome, state, actual, day0_at, items, dev = row[
            :14
        ]
        yield (
            ctx.study.code,
            ctx.site_code(site),
            subject,
            code,
            label,
            _flag(definition is not None),
            _date(target),
            _date(start),
            _date(end),
            outcome,
            state,
            _date(actual),
            _day(actual, ctx.local_date(day0_at, site)),
            _flag(items is not None),
            ";".join(sorted(items)) if items else "",
            _flag(bool(dev)),
            *_quality_values(row[14:]),
        )


VISIT_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    VISIT,
    Column("label", "string", "Visit label."),
    Column("scheduled", "flag", "1 = a time point of the study's template; 0 = unscheduled visit."),
    Column("target_date", "date", "Target date (day 0 + the time point's offset)."),
    Column("window_start", "date", "First day of the visit window."),
    Column("window_end", "date", "Last day of the visit window."),
    Column("outcome", "string", "What was recorded about the visit.", values=_choices(c.VisitOutcome.choices)),
    Column(
        "state", "string", "State on the export date, in the site's time zone.", values=_choices(c.VisitState.choices)
    ),
    Column("actual_date", "date", "Date the visit took place."),
    STUDY_DAY,
    Column("sledai_assessed", "flag", "1 = SLEDAI-2K items were assessed at the visit."),
    Column(
        "sledai_items",
        "string",
        "SLEDAI-2K items present, ';'-separated codes.",
        values=_choices((i.code, i.label) for i in SLEDAI_ITEMS.values()),
    ),
    Column("out_of_window", "flag", "1 = the visit took place outside its window (a deviation reason was recorded)."),
    *_quality_columns("the visit or any of its results", "the visit", "the visit"),
]


def _tidy_results(ctx: Context) -> Iterator[tuple]:
    qs = (
        _results(ctx)
        .annotate(
            day0_at=_first_infusion("visit__patient_id"),
            dq_result_queries=_result_queries(),
            **{
                name: value
                for name, value in _quality(RecordKind.VISIT, "visit_id").items()
                if name != "dq_open_queries"
            },
        )
        .order_by("visit__patient__subject_code", "visit__target_date", "visit__code", "code")
        .values_list(
            "visit__patient__site_id",
            "visit__patient__subject_code",
            "visit__code",
            "visit__actual_date",
            "day0_at",
            "code",
            "value",
            "entered_value",
            "entered_unit",
            "derived",
            "comparator",
            "dq_result_queries",
            "dq_verified",
            "dq_signed",
        )
    )
    for row in _stream(qs):
        site, subject, visit, on, day0_at, code, value, entered, entered_unit, derived, comparator = row[:11]
        analyte = ANALYTES.get(code)
        yield (
            ctx.study.code,
            ctx.site_code(site),
            subject,
            visit,
            _date(on),
            _day(on, ctx.local_date(day0_at, site)),
            code,
            analyte.label if analyte else "",
            comparator,
            _num(value),
            analyte.unit if analyte else "",
            _num(entered),
            entered_unit,
            _flag(derived),
            (analyte.loinc or "") if analyte else "",
            *_quality_values(row[11:]),
        )


RESULT_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    VISIT,
    VISIT_DATE,
    STUDY_DAY,
    Column("code", "string", "Result code of the registry's catalogue.", values=ANALYTE_CODES),
    Column("label", "string", "What was measured."),
    Column(
        "comparator",
        "string",
        "Blank for an exact value; for a censored one, how the true value relates to `value` and `entered_value` "
        "(< 10: below 10), as FHIR's Quantity.comparator.",
        values="<; <=; >=; >",
    ),
    Column("value", "decimal", "Value in the catalogue's canonical unit (the limit when censored).", unit="see unit"),
    Column("unit", "string", "Canonical unit of the code."),
    Column(
        "entered_value", "decimal", "Value as entered (blank for values the registry derived).", unit="see entered_unit"
    ),
    Column("entered_unit", "string", "Unit as entered."),
    Column("derived", "flag", "1 = computed by the registry (SLEDAI-2K total from items, eGFR from creatinine)."),
    Column("loinc", "string", "LOINC code, where one exists."),
    *_quality_columns("the result", "the result's visit", "the result's visit"),
]


def _tidy_outcomes(ctx: Context) -> Iterator[tuple]:
    qs = _outcome_rows(ctx).values_list(
        "visit__patient__site_id",
        "visit__patient__subject_code",
        "visit__code",
        "visit__actual_date",
        "day0_at",
        "algorithm_version",
        "sledai",
        "sledai_change",
        "sri4",
        "sri4_note",
        "remission",
        "renal_response",
        "flare",
        "relapse",
        "notes",
        "computed_at",
    )
    for (
        site,
        subject,
        visit,
        on,
        day0_at,
        version,
        sledai,
        change,
        sri4,
        note,
        rem,
        renal,
        flare,
        relapse,
        notes,
        at,
    ) in _stream(qs):
        yield (
            ctx.study.code,
            ctx.site_code(site),
            subject,
            visit,
            _date(on),
            _day(on, ctx.local_date(day0_at, site)),
            version,
            _num(sledai),
            _num(change),
            _flag(sri4),
            note,
            rem,
            renal,
            flare,
            _flag(relapse),
            "; ".join(notes or []),
            at.isoformat(timespec="seconds") if at else "",
        )


OUTCOME_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    VISIT,
    VISIT_DATE,
    STUDY_DAY,
    Column("algorithm_version", "string", "Version of the outcome algorithm that computed the row."),
    Column("sledai", "decimal", "SLEDAI-2K total at the visit.", unit="points"),
    Column("sledai_change", "decimal", "SLEDAI-2K change from baseline.", unit="points"),
    Column("sri4", "flag", "SRI-4 (simplified; BILAG not assessed): 1 met, 0 not met, blank not assessable."),
    Column("sri4_note", "string", "Why SRI-4 could not be assessed, or what it rests on."),
    Column(
        "remission",
        "string",
        "Remission (study's definitions); blank unknown.",
        values=_choices(
            [(o.REMISSION_COMPLETE, "complete"), (o.REMISSION_PARTIAL, "partial"), (o.REMISSION_NONE, "none")]
        ),
    ),
    Column(
        "renal_response",
        "string",
        "Renal response (KDIGO-style); blank unknown.",
        values=_choices(
            [
                (o.RENAL_COMPLETE, "complete"),
                (o.RENAL_PARTIAL, "partial"),
                (o.RENAL_NONE, "none"),
                (o.RENAL_NOT_APPLICABLE, "not applicable"),
            ]
        ),
    ),
    Column(
        "flare",
        "string",
        "Flare (SELENA-SLEDAI-style) versus the previous visit; blank not assessable.",
        values=_choices(
            [
                (o.FLARE_NONE, "no flare"),
                (o.FLARE_MILD_MODERATE, "mild/moderate flare"),
                (o.FLARE_SEVERE, "severe flare"),
            ]
        ),
    ),
    Column("relapse", "flag", "1 = a flare after a remission; blank when not assessable."),
    Column("notes", "string", "Notes of the computation, '; '-separated."),
    Column("computed_at", "datetime", "When the outcomes were computed (UTC, ISO 8601)."),
]


def _tidy_changes(ctx: Context) -> Iterator[tuple]:
    qs = _outcome_rows(ctx).values_list(
        "visit__patient__site_id", "visit__patient__subject_code", "visit__code", "visit__actual_date", "changes"
    )
    for site, subject, visit, on, changes in _stream(qs):
        for code, change in sorted((changes or {}).items()):
            analyte = ANALYTES.get(code)
            yield (
                ctx.study.code,
                ctx.site_code(site),
                subject,
                visit,
                _date(on),
                code,
                analyte.unit if analyte else "",
                change.get("baseline_comparator", ""),
                _s(change.get("baseline")),
                change.get("comparator", ""),
                _s(change.get("value")),
                _s(change.get("absolute")),
                _s(change.get("percent")),
            )


CHANGE_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    VISIT,
    VISIT_DATE,
    Column("code", "string", "Result code.", values=ANALYTE_CODES),
    Column("unit", "string", "Canonical unit of the code."),
    Column("baseline_comparator", "string", "The baseline's comparator when it is censored.", values="<; <=; >=; >"),
    Column(
        "baseline", "decimal", "Baseline value (BL visit, else the last value on or before day 0).", unit="see unit"
    ),
    Column("comparator", "string", "The value's comparator when it is censored.", values="<; <=; >=; >"),
    Column("value", "decimal", "Value at the visit.", unit="see unit"),
    Column("change", "decimal", "Absolute change from baseline (blank when either is censored).", unit="see unit"),
    Column("percent_change", "decimal", "Percent change from baseline (blank when the baseline is 0).", unit="%"),
]


def _tidy_medications(ctx: Context) -> Iterator[tuple]:
    qs = (
        ConcomitantMedication.objects.for_sites(ctx.site_ids)
        .filter(patient__study_id=ctx.study.pk)
        .order_by("patient__subject_code", "start_date", "pk")
        .values_list(
            "patient__site_id",
            "patient__subject_code",
            "drug",
            "drug_other",
            "dose",
            "unit",
            "frequency",
            "start_date",
            "stop_date",
            "ongoing",
        )
    )
    labels = dict(pc.Drug.choices)
    for site, subject, drug, other, dose, unit, frequency, start, stop, ongoing in _stream(qs):
        yield (
            ctx.study.code,
            ctx.site_code(site),
            subject,
            drug,
            other if drug == pc.Drug.OTHER else labels.get(drug, drug),
            _num(dose),
            unit,
            frequency,
            _date(start),
            _date(stop),
            _flag(ongoing),
        )


MEDICATION_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    Column("drug", "string", "Drug code.", values=_choices(pc.Drug.choices)),
    Column("drug_name", "string", "Drug name (as recorded for 'other')."),
    Column("dose", "decimal", "Dose per administration.", unit="see unit"),
    Column("unit", "string", "Dose unit.", values=_choices(pc.DoseUnit.choices)),
    Column("frequency", "string", "Frequency.", values=_choices(pc.Frequency.choices)),
    Column("start_date", "date", "Start date."),
    Column("stop_date", "date", "Stop date (blank when ongoing)."),
    Column("ongoing", "flag", "1 = ongoing."),
]


def _tidy_adverse_events(ctx: Context) -> Iterator[tuple]:
    seq = _sequence()
    for ae in _ae_rows(ctx, quality=True):
        site, subject = ae["patient__site_id"], ae["patient__subject_code"]
        serious = any(ae[name] for name in SERIOUS_FIELDS)
        susar = serious and not ae["expected"] and ae["relatedness"] in c.RELATED_LEVELS
        yield (
            ctx.study.code,
            ctx.site_code(site),
            subject,
            seq(subject),
            ae["term"],
            ae["meddra_version"],
            _s(ae["meddra_llt_code"]),
            ae["meddra_llt"],
            _s(ae["meddra_pt_code"]),
            ae["meddra_pt"],
            _s(ae["meddra_hlt_code"]),
            ae["meddra_hlt"],
            _s(ae["meddra_hlgt_code"]),
            ae["meddra_hlgt"],
            _s(ae["meddra_soc_code"]),
            ae["meddra_soc"],
            ae["category"],
            _date(ae["onset_date"]),
            _date(ae["resolution_date"]),
            _day(ae["onset_date"], ctx.local_date(ae["day0_at"], site)),
            ae["grade"],
            _flag(serious),
            *(_flag(ae[name]) for name in SERIOUS_FIELDS),
            ae["relatedness"],
            _flag(ae["expected"]),
            _flag(susar),
            ae["action_taken"],
            ae["outcome"],
            _date(ae["aware_date"]),
            _date(ae["initial_report_due"]),
            _date(ae["initial_report_submitted_on"]),
            _date(ae["complete_report_due"]),
            _date(ae["complete_report_submitted_on"]),
            _s(ae["transplant__infusion_number"]),
            *_quality_values(tuple(ae[name] for name in QUALITY_FIELDS)),
        )


AE_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    Column("ae_number", "integer", "Sequence of the event within the subject (by onset)."),
    Column("term", "string", "Event term as reported."),
    Column("meddra_version", "string", "MedDRA version of the coding (blank: not yet coded)."),
    Column("meddra_llt_code", "integer", "MedDRA lowest level term code the term was coded to."),
    Column("meddra_llt", "string", "MedDRA lowest level term."),
    Column("meddra_pt_code", "integer", "MedDRA preferred term code."),
    Column("meddra_pt", "string", "MedDRA preferred term."),
    Column("meddra_hlt_code", "integer", "MedDRA high level term code (primary path)."),
    Column("meddra_hlt", "string", "MedDRA high level term (primary path)."),
    Column("meddra_hlgt_code", "integer", "MedDRA high level group term code (primary path)."),
    Column("meddra_hlgt", "string", "MedDRA high level group term (primary path)."),
    Column("meddra_soc_code", "integer", "MedDRA primary system organ class code."),
    Column("meddra_soc", "string", "MedDRA primary system organ class."),
    Column("category", "string", "Category.", values=_choices(c.AECategory.choices)),
    Column("onset_date", "date", "Onset date."),
    Column("resolution_date", "date", "Resolution date (for a fatal event, the date of death)."),
    Column("onset_study_day", "integer", "Days from the first infusion to the onset (day 0 = first infusion)."),
    Column("grade", "integer", "CTCAE v5 grade.", values=_choices(c.CTCAEGrade.choices)),
    Column("serious", "flag", "1 = serious (ICH E2A: at least one criterion below)."),
    *[Column(name, "flag", f"1 = serious because it {label}.") for name, label in c.SERIOUSNESS_CRITERIA],
    Column("relatedness", "string", "Relatedness to MSCT.", values=_choices(c.Relatedness.choices)),
    Column("expected", "flag", "1 = expected according to the study's reference safety information."),
    Column("susar", "flag", "1 = suspected unexpected serious adverse reaction."),
    Column("action_taken", "string", "Action taken.", values=_choices(c.AEAction.choices)),
    Column("outcome", "string", "Outcome.", values=_choices(c.AEOutcome.choices)),
    Column("aware_date", "date", "Day the site became aware (day 0 of the reporting clock)."),
    Column("initial_report_due", "date", "Expedited initial report due (SUSAR only)."),
    Column("initial_report_submitted_on", "date", "Expedited initial report submitted."),
    Column("complete_report_due", "date", "Expedited complete report due (fatal or life-threatening SUSAR)."),
    Column("complete_report_submitted_on", "date", "Expedited complete report submitted."),
    Column("infusion_number", "integer", "The infusion, for an infusion-related event."),
    *_quality_columns("the event", "the event", "the event"),
]


TIDY_TABLES: list[Table] = [
    Table("tidy/patients.csv", "One row per patient.", PATIENT_COLUMNS, _tidy_patients),
    Table("tidy/infusions.csv", "One row per MSC infusion.", INFUSION_COLUMNS, _tidy_infusions),
    Table("tidy/visits.csv", "One row per visit (scheduled or unscheduled).", VISIT_COLUMNS, _tidy_visits),
    Table("tidy/results.csv", "One row per result (long format).", RESULT_COLUMNS, _tidy_results),
    Table("tidy/outcomes.csv", "One row per visit with computed outcomes.", OUTCOME_COLUMNS, _tidy_outcomes),
    Table(
        "tidy/outcome_changes.csv",
        "One row per visit and result code: change from baseline.",
        CHANGE_COLUMNS,
        _tidy_changes,
    ),
    Table("tidy/medications.csv", "One row per concomitant medication.", MEDICATION_COLUMNS, _tidy_medications),
    Table("tidy/adverse_events.csv", "One row per adverse event.", AE_COLUMNS, _tidy_adverse_events),
]
