"""The CDISC SDTM datasets (DM, EX, CM, LB, IS, QS, AE, and CO from `sdtm_co`) in SDTMIG 3.4 variable
order: the columns of each domain, described for the data dictionary, and its rows, with USUBJID =
STUDYID-SUBJID, study days counted from the first infusion as day 1 (SDTM has no day 0), EPOCH from the
infusion dates and every character value in ASCII. The controlled terms are in `sdtm_terms`; the XPT,
Dataset-JSON and define.xml in `sdtm_files`."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal

import pycountry
from django.db.models import F, OuterRef, Q, Subquery

from followup import constants as c
from followup.catalogue import ANALYTES, SLEDAI_ITEMS
from followup.computations import plain
from followup.models import AdverseEvent, Result, Visit
from patients import constants as pc
from patients.models import ConcomitantMedication, TransplantEvent
from registry import constants as rc
from registry.models import Site
from reporting.exports.common import (
    CELL_TYPE,
    ENDED_STATUSES,
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
from reporting.exports.sdtm_co import CO_COLUMNS, _sdtm_co
from reporting.exports.sdtm_terms import (
    EPOCHS,
    EX_DOSE_SCALE,
    EX_DOSE_UNIT,
    IMMUNOGENICITY_TESTS,
    LAB_TESTS,
    UNITS,
    ascii_text,
    ct_unit,
    epoch,
)
from reporting.exports.sources import (
    _ae_rows,
    _count_infusions,
    _first_infusion,
    _last_infusion,
    _patients,
    _results,
    _stream,
    _visits,
)

LAB_CODES = tuple(LAB_TESTS)
CDISC_FREQUENCY = {
    pc.Frequency.ONCE: "ONCE",
    pc.Frequency.DAILY: "QD",
    pc.Frequency.BID: "BID",
    pc.Frequency.TID: "TID",
    pc.Frequency.WEEKLY: "QS",  # CDISC: QS = once a week
    pc.Frequency.EVERY_2_WEEKS: "Q2W",
    pc.Frequency.MONTHLY: "QM",
    pc.Frequency.OTHER: "OTHER",
}
AE_SEVERITY = {1: "MILD", 2: "MODERATE", 3: "SEVERE", 4: "SEVERE", 5: "SEVERE"}
AE_RELATEDNESS = {
    c.Relatedness.UNRELATED: "NOT RELATED",
    c.Relatedness.UNLIKELY: "UNLIKELY RELATED",
    c.Relatedness.POSSIBLE: "POSSIBLY RELATED",
    c.Relatedness.PROBABLE: "PROBABLY RELATED",
    c.Relatedness.DEFINITE: "DEFINITELY RELATED",
}
AE_OUTCOME = {
    c.AEOutcome.RECOVERED: "RECOVERED/RESOLVED",
    c.AEOutcome.RECOVERING: "RECOVERING/RESOLVING",
    c.AEOutcome.NOT_RECOVERED: "NOT RECOVERED/NOT RESOLVED",
    c.AEOutcome.SEQUELAE: "RECOVERED/RESOLVED WITH SEQUELAE",
    c.AEOutcome.FATAL: "FATAL",
    c.AEOutcome.UNKNOWN: "UNKNOWN",
}
AE_ACTION_ON_TREATMENT = {
    c.AEAction.INFUSION_INTERRUPTED: "DRUG INTERRUPTED",
    c.AEAction.INFUSION_STOPPED: "DRUG WITHDRAWN",
}
AE_OTHER_ACTION = {
    c.AEAction.TREATMENT_GIVEN: "TREATMENT GIVEN",
    c.AEAction.HOSPITALISED: "HOSPITALISED",
    c.AEAction.OTHER: "OTHER",
}
SDTM_SERIOUS = {
    "serious_death": "AESDTH",
    "serious_life_threatening": "AESLIFE",
    "serious_hospitalisation": "AESHOSP",
    "serious_disability": "AESDISAB",
    "serious_congenital_anomaly": "AESCONG",
    "serious_other_important": "AESMIE",
}


# Value formatting --------------------------------------------------------------------------------------


def _yn(value) -> str:
    return "" if value is None else ("Y" if value else "N")


def _sdtm_day(on: dt.date | None, reference: dt.date | None) -> str | int:
    """SDTM --DY: day 1 is the reference start date; there is no day 0."""
    if not on or not reference:
        return ""
    days = (on - reference).days
    return days + 1 if days >= 0 else days


def _sdtm_datetime(moment: dt.datetime | None, zone: zoneinfo.ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M") if moment else ""


# SDTM-style datasets -----------------------------------------------------------------------------------

STUDYID = Column("STUDYID", "string", "Study identifier (study code).")
USUBJID = Column("USUBJID", "string", "Unique subject identifier: STUDYID-SUBJID.")
VISITNUM = Column("VISITNUM", "integer", "Visit number: the time point's planned day offset (blank unscheduled).")
VISIT_SDTM = Column("VISIT", "string", "Visit name (the registry's visit code).")


def _domain(code: str) -> Column:
    return Column("DOMAIN", "string", "Domain abbreviation.", values=code)


EPOCH = Column("EPOCH", "string", "Epoch of the date: SCREENING, TREATMENT, FOLLOW-UP.", values="; ".join(EPOCHS))


def _arm(infusions: int) -> tuple[str, str]:
    if not infusions:
        return "", ""
    if infusions == 1:
        return "MSCT1", "MSCT single"
    if infusions == 2:
        return "MSCT2", "MSCT double"
    return f"MSCT{infusions}", f"MSCT x{infusions}"


def _country(site: Site) -> str:
    """ISO 3166-1 alpha-3 (SDTM COUNTRY) from the site's alpha-2 code."""
    found = pycountry.countries.get(alpha_2=site.country)
    if found is None:
        raise ValueError(f"COUNTRY: site {site.code} has country {site.country!r}, not an ISO 3166-1 alpha-2 code")
    return found.alpha_3


def _epoch(ctx: Context, site: int, on: dt.date | None, day0_at, last_at) -> str:
    return epoch(on, ctx.local_date(day0_at, site), ctx.local_date(last_at, site))


def _latest(model, field: str) -> Subquery:
    """The latest `field` (a date) of the patient's `model` records (a blank one counts for none)."""
    records = model.objects.filter(patient_id=OuterRef("pk"), **{f"{field}__isnull": False})
    return Subquery(records.order_by(F(field).desc()).values(field)[:1])


# Dates of a subject's records that fall within participation: RFPENDTC is never before any of them.
_CONTACT_DATES = {
    "last_visit_on": (Visit, "actual_date"),
    "last_ae_onset": (AdverseEvent, "onset_date"),
    "last_ae_end": (AdverseEvent, "resolution_date"),
    "last_cm_start": (ConcomitantMedication, "start_date"),
    "last_cm_stop": (ConcomitantMedication, "stop_date"),
}


def _sdtm_dm(ctx: Context) -> Iterator[tuple]:
    qs = (
        _patients(ctx)
        .annotate(
            day0_at=_first_infusion("pk"),
            n_infusions=_count_infusions("pk"),
            last_at=_last_infusion("pk"),
            last_minutes=_last_infusion("pk", "duration_minutes"),
            **{name: _latest(model, field) for name, (model, field) in _CONTACT_DATES.items()},
        )
        .order_by("subject_code")
        .values_list(
            "site_id",
            "subject_code",
            "sex",
            "birth_year",
            "consent_date",
            "status",
            "status_date",
            "day0_at",
            "n_infusions",
            "last_at",
            "last_minutes",
            *_CONTACT_DATES,
        )
    )
    for row in _stream(qs):
        site, subject, sex, birth, consent, status, status_date, day0_at, n, last_at, minutes, *record_dates = row
        zone = ctx.zone(site)
        armcd, arm = _arm(n or 0)
        deceased = status == pc.PatientStatus.DECEASED
        ended = status in ENDED_STATUSES
        last_end = last_at + dt.timedelta(minutes=minutes) if last_at and minutes else last_at
        contacts = [d for d in (*record_dates, ctx.local_date(last_at, site), status_date if ended else None) if d]
        yield (
            ctx.study.code,
            "DM",
            ctx.usubjid(subject),
            subject,
            _sdtm_datetime(day0_at, zone),
            _sdtm_datetime(last_end, zone),
            _sdtm_datetime(day0_at, zone),
            _sdtm_datetime(last_end, zone),
            _date(consent),
            _date(max(contacts)) if contacts else "",
            _date(status_date) if deceased else "",
            "Y" if deceased else "",
            ctx.site_code(site),
            str(birth),
            (day0_at.astimezone(zone).year - birth) if day0_at else "",
            "YEARS" if day0_at else "",
            sex,
            armcd,
            arm,
            armcd,
            arm,
            "" if armcd else "NOT ASSIGNED",
            "",
            _country(ctx.sites[site]),
        )


DM_COLUMNS = [
    STUDYID,
    _domain("DM"),
    USUBJID,
    Column("SUBJID", "string", "Subject identifier within the study (pseudonymous subject code)."),
    Column("RFSTDTC", "datetime", "Reference start: first infusion, local date and time (ISO 8601)."),
    Column(
        "RFENDTC",
        "datetime",
        "Reference end: the end of the last MSC infusion, as RFXENDTC (blank for a patient never infused; the"
        " date follow-up ended is in RFPENDTC).",
    ),
    Column("RFXSTDTC", "datetime", "First MSC infusion, local date and time (ISO 8601)."),
    Column("RFXENDTC", "datetime", "End of the last MSC infusion (its start + duration, or its start)."),
    Column("RFICDTC", "date", "Date of informed consent."),
    Column(
        "RFPENDTC",
        "date",
        "End of participation: the latest of the last visit, the last infusion, the end-of-follow-up date and"
        " the dates of the patient's adverse events and medications.",
    ),
    Column("DTHDTC", "date", "Date of death."),
    Column("DTHFL", "string", "Subject death flag.", values="Y"),
    Column("SITEID", "string", "Site code."),
    Column("BRTHDTC", "string", "Year of birth (ISO 8601 year; only the year is kept)."),
    Column("AGE", "integer", "Age at RFSTDTC from the year of birth (year difference, may be one year high)."),
    Column("AGEU", "string", "Age unit.", values="YEARS"),
    Column("SEX", "string", "Sex.", values=_choices(rc.Sex.choices)),
    Column("ARMCD", "string", "Arm code (from the infusions recorded: the registry has no planned arm)."),
    Column("ARM", "string", "Arm.", values="MSCT single; MSCT double; MSCT xN"),
    Column("ACTARMCD", "string", "Actual arm code (the same as ARMCD)."),
    Column("ACTARM", "string", "Actual arm."),
    Column("ARMNRS", "string", "Why the arm is blank: a patient with no infusion.", values="NOT ASSIGNED"),
    Column("ACTARMUD", "string", "Unplanned actual arm: always blank (the arm is the treatment given)."),
    Column("COUNTRY", "string", "Country of the site (ISO 3166-1 alpha-3)."),
]


def _sdtm_ex(ctx: Context) -> Iterator[tuple]:
    qs = (
        TransplantEvent.objects.for_sites(ctx.site_ids)
        .filter(patient__study_id=ctx.study.pk)
        .annotate(day0_at=_first_infusion("patient_id"), last_at=_last_infusion("patient_id"))
        .order_by("patient__subject_code", "infusion_number")
        .values_list(
            "patient__site_id",
            "patient__subject_code",
            "infusion_number",
            "infused_at",
            "duration_minutes",
            "day0_at",
            "last_at",
            "lot__lot_number",
            "lot__tissue_source",
            "dose_cells_per_kg",
        )
    )
    for site, subject, number, at, minutes, day0_at, last_at, lot, tissue, dose in _stream(qs):
        zone = ctx.zone(site)
        end = at + dt.timedelta(minutes=minutes) if minutes else None
        reference = ctx.local_date(day0_at, site)
        yield (
            ctx.study.code,
            "EX",
            ctx.usubjid(subject),
            number,
            CELL_TYPE.get(tissue, "MSC"),
            _num(Decimal(dose) / EX_DOSE_SCALE) if dose is not None else "",
            EX_DOSE_UNIT,
            "SUSPENSION",
            "ONCE",
            "INTRAVENOUS",
            lot,
            _epoch(ctx, site, ctx.local_date(at, site), day0_at, last_at),
            _sdtm_datetime(at, zone),
            _sdtm_datetime(end, zone),
            _sdtm_day(ctx.local_date(at, site), reference),
            _sdtm_day(ctx.local_date(end, site), reference),
        )


EX_COLUMNS = [
    STUDYID,
    _domain("EX"),
    USUBJID,
    Column("EXSEQ", "integer", "Sequence number (the infusion number)."),
    Column(
        "EXTRT", "string", "Treatment: MSC type from the lot's tissue source.", values="UC-MSC; BM-MSC; AD-MSC; MSC"
    ),
    Column("EXDOSE", "decimal", "Dose in millions of cells per kg (the registry's cells/kg / 10^6).", unit="10^6/kg"),
    Column("EXDOSU", "string", "Dose unit (CDISC CT).", values=EX_DOSE_UNIT),
    Column("EXDOSFRM", "string", "Dose form.", values="SUSPENSION"),
    Column("EXDOSFRQ", "string", "Dosing frequency per interval.", values="ONCE"),
    Column("EXROUTE", "string", "Route.", values="INTRAVENOUS"),
    Column("EXLOT", "string", "Lot number."),
    EPOCH,
    Column("EXSTDTC", "datetime", "Start of the infusion, local date and time (ISO 8601)."),
    Column("EXENDTC", "datetime", "End of the infusion (start + duration, when the duration is known)."),
    Column("EXSTDY", "integer", "Study day of the start (day 1 = RFSTDTC)."),
    Column("EXENDY", "integer", "Study day of the end (blank without EXENDTC)."),
]


def _sdtm_cm(ctx: Context) -> Iterator[tuple]:
    qs = (
        ConcomitantMedication.objects.for_sites(ctx.site_ids)
        .filter(patient__study_id=ctx.study.pk)
        .annotate(day0_at=_first_infusion("patient_id"), last_at=_last_infusion("patient_id"))
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
            "day0_at",
            "last_at",
        )
    )
    labels = dict(pc.Drug.choices)
    seq = _sequence()
    cutoff = ctx.generated_at.date().isoformat()
    for site, subject, drug, other, dose, unit, frequency, start, stop, ongoing, day0_at, last_at in _stream(qs):
        name = other if drug == pc.Drug.OTHER else labels.get(drug, drug)
        reference = ctx.local_date(day0_at, site)
        yield (
            ctx.study.code,
            "CM",
            ctx.usubjid(subject),
            seq(subject),
            name,
            "" if drug == pc.Drug.OTHER else drug.upper(),
            _num(dose),
            unit,
            CDISC_FREQUENCY.get(frequency, "OTHER"),
            _epoch(ctx, site, start, day0_at, last_at),
            _date(start),
            _date(stop),
            _sdtm_day(start, reference),
            _sdtm_day(stop, reference),
            "ONGOING" if ongoing else "",
            cutoff if ongoing else "",
        )


CM_COLUMNS = [
    STUDYID,
    _domain("CM"),
    USUBJID,
    Column("CMSEQ", "integer", "Sequence number within the subject (by start date)."),
    Column("CMTRT", "string", "Medication as recorded."),
    Column("CMDECOD", "string", "Standardised drug name (registry drug code, upper case; blank for 'other')."),
    Column("CMDOSE", "decimal", "Dose per administration.", unit="see CMDOSU"),
    Column("CMDOSU", "string", "Dose unit.", values=_choices(pc.DoseUnit.choices)),
    Column("CMDOSFRQ", "string", "Frequency (CDISC terms).", values="ONCE; QD; BID; TID; QS (weekly); Q2W; QM; OTHER"),
    EPOCH,
    Column("CMSTDTC", "date", "Start date."),
    Column("CMENDTC", "date", "End date."),
    Column("CMSTDY", "integer", "Study day of the start (day 1 = RFSTDTC)."),
    Column("CMENDY", "integer", "Study day of the end."),
    Column("CMENRTPT", "string", "End relative to the reference time point.", values="ONGOING"),
    Column("CMENTPT", "date", "Reference time point for CMENRTPT: the export date."),
]


def _last_before_exposure(rows: list, test: int | tuple[int, ...], flag: int, has_result) -> None:
    """Set the --LOBXFL of one subject's rows (in date order): the last row of each test with a result on
    or before the date of the first infusion (a visit on the infusion day is taken as before it). A test is
    the value at index `test`, or the values at the indexes `test` (IS: the test code and binding agent)."""
    indexes = test if isinstance(test, tuple) else (test,)
    last: dict[tuple, list] = {}
    for row, (date, reference) in rows:
        if date and reference and date <= reference and has_result(row):
            last[tuple(row[i] for i in indexes)] = row
    for row in last.values():
        row[flag] = "Y"


def _by_subject(items: Iterator[tuple[str, list, tuple]], flush) -> Iterator[tuple]:
    """Group rows of consecutive subjects, let `flush` mark them, and yield them as tuples."""
    subject, group = None, []
    for who, row, dates in items:
        if who != subject and group:
            flush(group)
            yield from (tuple(r) for r, _ in group)
            group = []
        subject = who
        group.append((row, dates))
    if group:
        flush(group)
        yield from (tuple(r) for r, _ in group)


LB_TESTCD, LB_ORRES, LB_LOBXFL = 4, 7, 14


def _specimen_results(ctx: Context, codes: Iterable[str]):
    """The results of `codes` with what an SDTM findings record needs, by subject, date, visit and code."""
    return (
        _results(ctx)
        .filter(code__in=codes)
        .annotate(day0_at=_first_infusion("visit__patient_id"), last_at=_last_infusion("visit__patient_id"))
        .order_by("visit__patient__subject_code", "visit__target_date", "visit__code", "code")
        .values_list(
            "visit__patient__site_id",
            "visit__patient__subject_code",
            "visit__code",
            "visit__definition__offset_days",
            "visit__actual_date",
            "day0_at",
            "last_at",
            "code",
            "value",
            "entered_value",
            "entered_unit",
            "derived",
            "comparator",
        )
    )


def _sdtm_lb(ctx: Context) -> Iterator[tuple]:
    qs = _specimen_results(ctx, LAB_CODES)
    seq = _sequence()

    def rows():
        for (
            site,
            subject,
            visit,
            offset,
            on,
            day0_at,
            last_at,
            code,
            value,
            entered,
            entered_unit,
            derived,
            sign,
        ) in _stream(qs):
            analyte, test = ANALYTES[code], LAB_TESTS[code]
            has_entered = entered is not None and entered_unit
            reference = ctx.local_date(day0_at, site)
            # A censored result is a limit, not a number: "<10" in the character results, no numeric result
            # (SDTM IG 3.4, LB: a value below the limit of quantitation).
            row = [
                ctx.study.code,
                "LB",
                ctx.usubjid(subject),
                seq(subject),
                test.testcd,
                test.test,
                test.category,
                sign + (_num(entered) if has_entered else _num(value)),
                ct_unit(entered_unit if has_entered else analyte.unit, field="LBORRESU"),
                sign + _num(value),
                "" if sign else _num(value),
                ct_unit(analyte.unit, field="LBSTRESU"),
                analyte.loinc or "",
                test.specimen,
                "",
                "Y" if visit == "BL" else "",
                "Y" if derived else "",
                _s(offset),
                visit,
                _epoch(ctx, site, on, day0_at, last_at),
                _date(on),
                _sdtm_day(on, reference),
            ]
            yield subject, row, (on, reference)

    def flush(group):
        _last_before_exposure(group, LB_TESTCD, LB_LOBXFL, lambda row: row[LB_ORRES] != "")

    return _by_subject(rows(), flush)


LB_COLUMNS = [
    STUDYID,
    _domain("LB"),
    USUBJID,
    Column("LBSEQ", "integer", "Sequence number within the subject."),
    Column(
        "LBTESTCD",
        "string",
        "Test code (CDISC CT; TREG is sponsor-defined). Registry code -> LBTESTCD: "
        + "; ".join(f"{code}={test.testcd}" for code, test in LAB_TESTS.items()),
        values="; ".join(test.testcd for test in LAB_TESTS.values()),
    ),
    Column("LBTEST", "string", "Test name (CDISC CT).", values="; ".join(t.test for t in LAB_TESTS.values())),
    Column("LBCAT", "string", "Category.", values="CHEMISTRY; HEMATOLOGY; IMMUNOLOGY; URINALYSIS"),
    Column("LBORRES", "string", "Result as entered; a censored result with its comparator (<10)."),
    Column(
        "LBORRESU", "string", "Unit as entered, as its CDISC CT unit.", values="; ".join(sorted(set(UNITS.values())))
    ),
    Column("LBSTRESC", "string", "Standard result (character); a censored result with its comparator (<10)."),
    Column("LBSTRESN", "decimal", "Standard result (numeric), in LBSTRESU; empty when censored.", unit="see LBSTRESU"),
    Column("LBSTRESU", "string", "Standard unit (the catalogue's canonical unit, as its CDISC CT unit)."),
    Column("LBLOINC", "string", "LOINC code."),
    Column("LBSPEC", "string", "Specimen.", values="SERUM; BLOOD; URINE"),
    Column(
        "LBLOBXFL", "string", "Last observation before exposure (on or before the first infusion's date).", values="Y"
    ),
    Column("LBBLFL", "string", "Baseline flag (the BL visit).", values="Y"),
    Column("LBDRVFL", "string", "Derived flag (computed by the registry, e.g. eGFR).", values="Y"),
    VISITNUM,
    VISIT_SDTM,
    EPOCH,
    Column("LBDTC", "date", "Date of the visit (collection)."),
    Column("LBDY", "integer", "Study day (day 1 = RFSTDTC)."),
]

IS_TESTCD, IS_BDAGNT, IS_ORRES, IS_LOBXFL = 4, 6, 7, 13


def _sdtm_is(ctx: Context) -> Iterator[tuple]:
    """Anti-dsDNA and ANA results as IS autoantibody records (`IMMUNOGENICITY_TESTS`), in the form of LB."""
    qs = _specimen_results(ctx, IMMUNOGENICITY_TESTS)
    seq = _sequence()

    def rows():
        for (
            site,
            subject,
            visit,
            offset,
            on,
            day0_at,
            last_at,
            code,
            value,
            entered,
            entered_unit,
            _derived,
            sign,
        ) in _stream(qs):
            analyte, test = ANALYTES[code], IMMUNOGENICITY_TESTS[code]
            has_entered = entered is not None and entered_unit
            reference = ctx.local_date(day0_at, site)
            row = [
                ctx.study.code,
                "IS",
                ctx.usubjid(subject),
                seq(subject),
                test.testcd,
                test.test,
                test.binding_agent,
                sign + (_num(entered) if has_entered else _num(value)),
                ct_unit(entered_unit if has_entered else analyte.unit, field="ISORRESU"),
                sign + _num(value),
                "" if sign else _num(value),
                ct_unit(analyte.unit, field="ISSTRESU"),
                test.specimen,
                "",
                "Y" if visit == "BL" else "",
                _s(offset),
                visit,
                _epoch(ctx, site, on, day0_at, last_at),
                _date(on),
                _sdtm_day(on, reference),
            ]
            yield subject, row, (on, reference)

    def flush(group):
        _last_before_exposure(group, (IS_TESTCD, IS_BDAGNT), IS_LOBXFL, lambda row: row[IS_ORRES] != "")

    return _by_subject(rows(), flush)


IS_COLUMNS = [
    STUDYID,
    _domain("IS"),
    USUBJID,
    Column("ISSEQ", "integer", "Sequence number within the subject."),
    Column(
        "ISTESTCD",
        "string",
        "Test code (CDISC CT). Registry code -> ISTESTCD/ISBDAGNT: "
        + "; ".join(f"{code}={t.testcd}/{t.binding_agent}" for code, t in IMMUNOGENICITY_TESTS.items()),
        values="; ".join(sorted({t.testcd for t in IMMUNOGENICITY_TESTS.values()})),
    ),
    Column(
        "ISTEST",
        "string",
        "Test name (CDISC CT).",
        values="; ".join(sorted({t.test for t in IMMUNOGENICITY_TESTS.values()})),
    ),
    Column(
        "ISBDAGNT",
        "string",
        "Binding agent: the antigen the antibody binds (CDISC CT).",
        values="; ".join(t.binding_agent for t in IMMUNOGENICITY_TESTS.values()),
    ),
    Column("ISORRES", "string", "Result as entered; a censored result with its comparator (<10)."),
    Column(
        "ISORRESU",
        "string",
        "Unit as entered, as its CDISC CT unit.",
        values="; ".join(sorted({UNITS[ANALYTES[c].unit] for c in IMMUNOGENICITY_TESTS})),
    ),
    Column("ISSTRESC", "string", "Standard result (character); a censored result with its comparator (<10)."),
    Column("ISSTRESN", "decimal", "Standard result (numeric), in ISSTRESU; empty when censored.", unit="see ISSTRESU"),
    Column("ISSTRESU", "string", "Standard unit (the catalogue's canonical unit, as its CDISC CT unit)."),
    Column("ISSPEC", "string", "Specimen.", values="SERUM"),
    Column(
        "ISLOBXFL", "string", "Last observation before exposure (on or before the first infusion's date).", values="Y"
    ),
    Column("ISBLFL", "string", "Baseline flag (the BL visit).", values="Y"),
    VISITNUM,
    VISIT_SDTM,
    EPOCH,
    Column("ISDTC", "date", "Date of the visit (collection)."),
    Column("ISDY", "integer", "Study day (day 1 = RFSTDTC)."),
]

SLEDAI_TESTCD = {code: f"SLEDAI{n:02d}" for n, code in enumerate(SLEDAI_ITEMS, start=1)}


QS_TESTCD, QS_ORRES, QS_LOBXFL = 4, 7, 10


def _sdtm_qs(ctx: Context) -> Iterator[tuple]:
    def score(code: str):
        return Subquery(Result.objects.filter(visit_id=OuterRef("pk"), code=code).values("value")[:1])

    qs = (
        _visits(ctx)
        .annotate(
            day0_at=_first_infusion("patient_id"),
            last_at=_last_infusion("patient_id"),
            sledai_total=score("SLEDAI2K"),
            pga=score("PGA"),
        )
        .filter(Q(sledai_items__isnull=False) | Q(sledai_total__isnull=False) | Q(pga__isnull=False))
        .order_by("patient__subject_code", "target_date", "code")
        .values_list(
            "patient__site_id",
            "patient__subject_code",
            "code",
            "definition__offset_days",
            "actual_date",
            "day0_at",
            "last_at",
            "sledai_items",
            "sledai_total",
            "pga",
        )
    )
    seq = _sequence()

    def rows():
        for site, subject, visit, offset, on, day0_at, last_at, items, total, pga in _stream(qs):
            reference = ctx.local_date(day0_at, site)
            tail = (
                _s(offset),
                visit,
                _epoch(ctx, site, on, day0_at, last_at),
                _date(on),
                _sdtm_day(on, reference),
            )

            def row(testcd, test, category, orres, points, derived=""):
                head = (ctx.study.code, "QS", ctx.usubjid(subject), seq(subject), testcd, test, category)  # noqa: B023
                baseline = "Y" if visit == "BL" else ""  # noqa: B023
                return subject, [*head, orres, points, points, "", baseline, derived, *tail], (on, reference)  # noqa: B023

            if items is not None:
                present = set(items)
                for code, item in SLEDAI_ITEMS.items():
                    found = code in present
                    points = str(item.weight if found else 0)
                    yield row(
                        SLEDAI_TESTCD[code], item.label[:40], "SLEDAI-2K", "PRESENT" if found else "ABSENT", points
                    )
            if total is not None:
                derived = "Y" if items is not None else ""
                yield row("SLEDAITT", "SLEDAI-2K Total Score", "SLEDAI-2K", plain(total), plain(total), derived)
            if pga is not None:
                yield row("PGA", "Physician Global Assessment", "PHYSICIAN GLOBAL ASSESSMENT", plain(pga), plain(pga))

    def flush(group):
        _last_before_exposure(group, QS_TESTCD, QS_LOBXFL, lambda row: row[QS_ORRES] != "")

    return _by_subject(rows(), flush)


QS_COLUMNS = [
    STUDYID,
    _domain("QS"),
    USUBJID,
    Column("QSSEQ", "integer", "Sequence number within the subject."),
    Column(
        "QSTESTCD",
        "string",
        "Question code: SLEDAI01..SLEDAI24 (items), SLEDAITT (total), PGA.",
        values=_choices(
            [
                *((SLEDAI_TESTCD[code], ascii_text(item.label)) for code, item in SLEDAI_ITEMS.items()),
                ("SLEDAITT", "SLEDAI-2K Total Score"),
                ("PGA", "Physician Global Assessment"),
            ]
        ),
    ),
    Column("QSTEST", "string", "Question name (ASCII: a degree sign is written 'deg')."),
    Column("QSCAT", "string", "Category.", values="SLEDAI-2K; PHYSICIAN GLOBAL ASSESSMENT"),
    Column("QSORRES", "string", "Finding as collected (PRESENT/ABSENT for items; the score for totals)."),
    Column("QSSTRESC", "string", "Standard result (character): points."),
    Column(
        "QSSTRESN",
        "decimal",
        "Standard result (numeric): points (the item's weight when present, else 0).",
        unit="points",
    ),
    Column(
        "QSLOBXFL", "string", "Last observation before exposure (on or before the first infusion's date).", values="Y"
    ),
    Column("QSBLFL", "string", "Baseline flag (the BL visit).", values="Y"),
    Column("QSDRVFL", "string", "Derived flag: the total computed from the items.", values="Y"),
    VISITNUM,
    VISIT_SDTM,
    EPOCH,
    Column("QSDTC", "date", "Date of the assessment (the visit)."),
    Column("QSDY", "integer", "Study day (day 1 = RFSTDTC)."),
]


# SDTMIG 3.4 order of the seriousness criteria.
AE_SERIOUS_ORDER = ["AESCONG", "AESDISAB", "AESDTH", "AESHOSP", "AESLIFE", "AESMIE"]
_SERIOUS_FIELD = {variable: name for name, variable in SDTM_SERIOUS.items()}


def _sdtm_ae(ctx: Context) -> Iterator[tuple]:
    seq = _sequence()
    categories = dict(c.AECategory.choices)
    for ae in _ae_rows(ctx):
        site, subject = ae["patient__site_id"], ae["patient__subject_code"]
        reference = ctx.local_date(ae["day0_at"], site)
        serious = any(ae[name] for name in SERIOUS_FIELDS)
        yield (
            ctx.study.code,
            "AE",
            ctx.usubjid(subject),
            seq(subject),
            ae["term"],
            ae["meddra_llt"],
            _s(ae["meddra_llt_code"]),
            ae["meddra_pt"],
            _s(ae["meddra_pt_code"]),
            ae["meddra_hlt"],
            _s(ae["meddra_hlt_code"]),
            ae["meddra_hlgt"],
            _s(ae["meddra_hlgt_code"]),
            categories.get(ae["category"], ae["category"]).upper(),
            ae["meddra_soc"],
            _s(ae["meddra_soc_code"]),
            ae["meddra_soc"],
            _s(ae["meddra_soc_code"]),
            AE_SEVERITY.get(ae["grade"], ""),
            _yn(serious),
            AE_ACTION_ON_TREATMENT.get(ae["action_taken"], "NOT APPLICABLE"),
            AE_OTHER_ACTION.get(ae["action_taken"], ""),
            AE_RELATEDNESS.get(ae["relatedness"], ""),
            AE_OUTCOME.get(ae["outcome"], "UNKNOWN"),
            *(_yn(ae[_SERIOUS_FIELD[variable]]) for variable in AE_SERIOUS_ORDER),
            str(ae["grade"]),
            _epoch(ctx, site, ae["onset_date"], ae["day0_at"], ae["last_at"]),
            _date(ae["onset_date"]),
            _date(ae["resolution_date"]),
            _sdtm_day(ae["onset_date"], reference),
            _sdtm_day(ae["resolution_date"], reference),
        )


_SERIOUS_LABEL = dict(c.SERIOUSNESS_CRITERIA)

AE_SDTM_COLUMNS = [
    STUDYID,
    _domain("AE"),
    USUBJID,
    Column("AESEQ", "integer", "Sequence number within the subject (by onset)."),
    Column(
        "AETERM",
        "string",
        "Reported term, in ASCII (see the export documentation; the verbatim is in tidy/adverse_events.csv).",
    ),
    Column("AELLT", "string", "MedDRA lowest level term (blank: not yet coded)."),
    Column("AELLTCD", "integer", "MedDRA lowest level term code."),
    Column("AEDECOD", "string", "Dictionary-derived term: the MedDRA preferred term (blank: not yet coded)."),
    Column("AEPTCD", "integer", "MedDRA preferred term code."),
    Column("AEHLT", "string", "MedDRA high level term (of the primary path)."),
    Column("AEHLTCD", "integer", "MedDRA high level term code."),
    Column("AEHLGT", "string", "MedDRA high level group term (of the primary path)."),
    Column("AEHLGTCD", "integer", "MedDRA high level group term code."),
    Column(
        "AECAT",
        "string",
        "Category (registry categories).",
        values="; ".join(label.upper() for _, label in c.AECategory.choices),
    ),
    Column("AEBODSYS", "string", "Body system or organ class: the MedDRA primary system organ class."),
    Column("AEBDSYCD", "integer", "Body system or organ class code (MedDRA primary SOC code)."),
    Column("AESOC", "string", "MedDRA primary system organ class."),
    Column("AESOCCD", "integer", "MedDRA primary system organ class code."),
    Column(
        "AESEV",
        "string",
        "Severity from the CTCAE grade (1 mild, 2 moderate, 3-5 severe).",
        values="MILD; MODERATE; SEVERE",
    ),
    Column("AESER", "string", "Serious event (ICH E2A).", values="Y; N"),
    Column(
        "AEACN", "string", "Action taken with the infusion.", values="DRUG INTERRUPTED; DRUG WITHDRAWN; NOT APPLICABLE"
    ),
    Column("AEACNOTH", "string", "Other action taken.", values="TREATMENT GIVEN; HOSPITALISED; OTHER"),
    Column(
        "AEREL",
        "string",
        "Causality to MSCT.",
        values="NOT RELATED; UNLIKELY RELATED; POSSIBLY RELATED; PROBABLY RELATED; DEFINITELY RELATED",
    ),
    Column("AEOUT", "string", "Outcome.", values="; ".join(AE_OUTCOME.values())),
    *[
        Column(variable, "string", f"Serious because it {_SERIOUS_LABEL[_SERIOUS_FIELD[variable]]}.", values="Y; N")
        for variable in AE_SERIOUS_ORDER
    ],
    Column("AETOXGR", "string", "CTCAE v5 grade.", values="1; 2; 3; 4; 5"),
    EPOCH,
    Column("AESTDTC", "date", "Start date."),
    Column("AEENDTC", "date", "End date (for a fatal event, the date of death)."),
    Column("AESTDY", "integer", "Study day of the start (day 1 = RFSTDTC)."),
    Column("AEENDY", "integer", "Study day of the end."),
]


def _ascii_rows(rows: Callable[[Context], Iterable[tuple]]) -> Callable[[Context], Iterator[tuple]]:
    """Every character value of an SDTM dataset in ASCII (`ascii_text`), as SAS V5 transport requires."""

    def build(ctx: Context) -> Iterator[tuple]:
        for row in rows(ctx):
            yield tuple(ascii_text(v) if isinstance(v, str) else v for v in row)

    return build


SDTM_TABLES: list[Table] = [
    Table("sdtm/dm.csv", "SDTM DM (demographics).", DM_COLUMNS, _ascii_rows(_sdtm_dm)),
    Table("sdtm/ex.csv", "SDTM EX (exposure: MSC infusions).", EX_COLUMNS, _ascii_rows(_sdtm_ex)),
    Table("sdtm/cm.csv", "SDTM CM (concomitant medications).", CM_COLUMNS, _ascii_rows(_sdtm_cm)),
    Table("sdtm/lb.csv", "SDTM LB (laboratory results).", LB_COLUMNS, _ascii_rows(_sdtm_lb)),
    Table("sdtm/is.csv", "SDTM IS (autoantibodies: anti-dsDNA, ANA).", IS_COLUMNS, _ascii_rows(_sdtm_is)),
    Table("sdtm/qs.csv", "SDTM QS (SLEDAI-2K items and total; PGA).", QS_COLUMNS, _ascii_rows(_sdtm_qs)),
    Table("sdtm/ae.csv", "SDTM AE (adverse events).", AE_SDTM_COLUMNS, _ascii_rows(_sdtm_ae)),
    Table("sdtm/co.csv", "SDTM CO (comments: open data clarification queries).", CO_COLUMNS, _ascii_rows(_sdtm_co)),
]
