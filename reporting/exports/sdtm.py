"""The CDISC SDTM datasets (DM, EX, CM, AE; LB, IS and QS from `sdtm_findings`, CO from `sdtm_co`) in
SDTMIG 3.4 variable order: the columns of each domain, described for the data dictionary, and its rows, with
USUBJID = STUDYID-SUBJID, study days counted from the first infusion as day 1 (SDTM has no day 0), EPOCH from
the infusion dates and every character value in ASCII. The variables every domain shares are in
`sdtm_common`, the controlled terms in `sdtm_terms`; the XPT, Dataset-JSON and define.xml in `sdtm_files`."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal

import pycountry
from django.db.models import F, OuterRef, Subquery

from followup import constants as c
from followup.models import AdverseEvent, Visit
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
from reporting.exports.sdtm_common import EPOCH, STUDYID, USUBJID, _domain, _epoch, _sdtm_day
from reporting.exports.sdtm_findings import IS_COLUMNS, LB_COLUMNS, QS_COLUMNS, _sdtm_is, _sdtm_lb, _sdtm_qs
from reporting.exports.sdtm_terms import EX_DOSE_SCALE, EX_DOSE_UNIT, ascii_text
from reporting.exports.sources import _ae_rows, _count_infusions, _first_infusion, _last_infusion, _patients, _stream

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


def _sdtm_datetime(moment: dt.datetime | None, zone: zoneinfo.ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M") if moment else ""


# SDTM-style datasets -----------------------------------------------------------------------------------


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
