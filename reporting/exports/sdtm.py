"""The CDISC SDTM-style datasets (DM, EX, CM, LB, QS, AE), written as CSV rather than XPT: the controlled
terms the registry's codes map to, the columns of each domain, described for the data dictionary, and its
rows, with USUBJID = STUDYID-SUBJID and study days counted from the first infusion as day 1 (SDTM has no
day 0)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator

from django.db.models import OuterRef, Q, Subquery

from followup import constants as c
from followup.catalogue import ANALYTES, SLEDAI_ITEMS
from followup.computations import plain
from followup.models import Result
from patients import constants as pc
from patients.models import ConcomitantMedication, TransplantEvent
from registry import constants as rc
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
from reporting.exports.sources import _ae_rows, _count_infusions, _first_infusion, _patients, _results, _stream, _visits

LAB_CODES = ("PROT24H", "UPCR", "ALB", "CREAT", "EGFR", "BUN", "C3", "C4", "ADSDNA", "ANA", "WBC", "PLT", "HGB", "TREG")
LB_CATEGORY = {
    "PROT24H": "URINALYSIS",
    "UPCR": "URINALYSIS",
    "ALB": "CHEMISTRY",
    "CREAT": "CHEMISTRY",
    "EGFR": "CHEMISTRY",
    "BUN": "CHEMISTRY",
    "C3": "IMMUNOLOGY",
    "C4": "IMMUNOLOGY",
    "ADSDNA": "IMMUNOLOGY",
    "ANA": "IMMUNOLOGY",
    "WBC": "HEMATOLOGY",
    "PLT": "HEMATOLOGY",
    "HGB": "HEMATOLOGY",
    "TREG": "IMMUNOLOGY",
}
LB_SPECIMEN = {"PROT24H": "URINE", "UPCR": "URINE", "WBC": "BLOOD", "PLT": "BLOOD", "HGB": "BLOOD", "TREG": "BLOOD"}
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


def _arm(infusions: int) -> tuple[str, str]:
    if not infusions:
        return "NOTTRT", "Not Treated"
    if infusions == 1:
        return "MSCT1", "MSCT single"
    if infusions == 2:
        return "MSCT2", "MSCT double"
    return f"MSCT{infusions}", f"MSCT x{infusions}"


def _sdtm_dm(ctx: Context) -> Iterator[tuple]:
    qs = (
        _patients(ctx)
        .annotate(day0_at=_first_infusion("pk"), n_infusions=_count_infusions("pk"))
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
        )
    )
    for site, subject, sex, birth, consent, status, status_date, day0_at, n in _stream(qs):
        zone = ctx.zone(site)
        armcd, arm = _arm(n or 0)
        deceased = status == pc.PatientStatus.DECEASED
        yield (
            ctx.study.code,
            "DM",
            ctx.usubjid(subject),
            subject,
            _sdtm_datetime(day0_at, zone),
            _date(status_date) if status in ENDED_STATUSES else "",
            _date(consent),
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
        )


DM_COLUMNS = [
    STUDYID,
    _domain("DM"),
    USUBJID,
    Column("SUBJID", "string", "Subject identifier within the study (pseudonymous subject code)."),
    Column("RFSTDTC", "datetime", "Reference start: first infusion, local date and time (ISO 8601)."),
    Column("RFENDTC", "date", "Reference end: date the patient completed, withdrew, was lost or died."),
    Column("RFICDTC", "date", "Date of informed consent."),
    Column("DTHDTC", "date", "Date of death."),
    Column("DTHFL", "string", "Subject death flag.", values="Y"),
    Column("SITEID", "string", "Site code."),
    Column("BRTHDTC", "string", "Year of birth (ISO 8601 year; only the year is kept)."),
    Column("AGE", "integer", "Age at RFSTDTC from the year of birth (year difference, may be one year high)."),
    Column("AGEU", "string", "Age unit.", values="YEARS"),
    Column("SEX", "string", "Sex.", values=_choices(rc.Sex.choices)),
    Column("ARMCD", "string", "Arm code (from the infusions recorded: the registry has no planned arm)."),
    Column("ARM", "string", "Arm.", values="MSCT single; MSCT double; MSCT xN; Not Treated"),
    Column("ACTARMCD", "string", "Actual arm code."),
    Column("ACTARM", "string", "Actual arm."),
]


def _sdtm_ex(ctx: Context) -> Iterator[tuple]:
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
            "duration_minutes",
            "day0_at",
            "lot__lot_number",
            "lot__tissue_source",
            "dose_cells_per_kg",
        )
    )
    for site, subject, number, at, minutes, day0_at, lot, tissue, dose in _stream(qs):
        zone = ctx.zone(site)
        end = at + dt.timedelta(minutes=minutes) if minutes else None
        yield (
            ctx.study.code,
            "EX",
            ctx.usubjid(subject),
            number,
            CELL_TYPE.get(tissue, "MSC"),
            dose,
            "cells/kg",
            "SUSPENSION",
            "ONCE",
            "INTRAVENOUS",
            lot,
            _sdtm_datetime(at, zone),
            _sdtm_datetime(end, zone),
            _sdtm_day(at.astimezone(zone).date(), ctx.local_date(day0_at, site)),
        )


EX_COLUMNS = [
    STUDYID,
    _domain("EX"),
    USUBJID,
    Column("EXSEQ", "integer", "Sequence number (the infusion number)."),
    Column(
        "EXTRT", "string", "Treatment: MSC type from the lot's tissue source.", values="UC-MSC; BM-MSC; AD-MSC; MSC"
    ),
    Column("EXDOSE", "integer", "Dose.", unit="cells/kg"),
    Column("EXDOSU", "string", "Dose unit.", values="cells/kg"),
    Column("EXDOSFRM", "string", "Dose form.", values="SUSPENSION"),
    Column("EXDOSFRQ", "string", "Dosing frequency per interval.", values="ONCE"),
    Column("EXROUTE", "string", "Route.", values="INTRAVENOUS"),
    Column("EXLOT", "string", "Lot number."),
    Column("EXSTDTC", "datetime", "Start of the infusion, local date and time (ISO 8601)."),
    Column("EXENDTC", "datetime", "End of the infusion (start + duration, when the duration is known)."),
    Column("EXSTDY", "integer", "Study day of the start (day 1 = RFSTDTC)."),
]


def _sdtm_cm(ctx: Context) -> Iterator[tuple]:
    qs = (
        ConcomitantMedication.objects.for_sites(ctx.site_ids)
        .filter(patient__study_id=ctx.study.pk)
        .annotate(day0_at=_first_infusion("patient_id"))
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
        )
    )
    labels = dict(pc.Drug.choices)
    seq = _sequence()
    cutoff = ctx.generated_at.date().isoformat()
    for site, subject, drug, other, dose, unit, frequency, start, stop, ongoing, day0_at in _stream(qs):
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
    Column("CMSTDTC", "date", "Start date."),
    Column("CMENDTC", "date", "End date."),
    Column("CMSTDY", "integer", "Study day of the start (day 1 = RFSTDTC)."),
    Column("CMENDY", "integer", "Study day of the end."),
    Column("CMENRTPT", "string", "End relative to the reference time point.", values="ONGOING"),
    Column("CMENTPT", "date", "Reference time point for CMENRTPT: the export date."),
]


def _sdtm_lb(ctx: Context) -> Iterator[tuple]:
    qs = (
        _results(ctx)
        .filter(code__in=LAB_CODES)
        .annotate(day0_at=_first_infusion("visit__patient_id"))
        .order_by("visit__patient__subject_code", "visit__target_date", "visit__code", "code")
        .values_list(
            "visit__patient__site_id",
            "visit__patient__subject_code",
            "visit__code",
            "visit__definition__offset_days",
            "visit__actual_date",
            "day0_at",
            "code",
            "value",
            "entered_value",
            "entered_unit",
            "derived",
            "comparator",
        )
    )
    seq = _sequence()
    for site, subject, visit, offset, on, day0_at, code, value, entered, entered_unit, derived, sign in _stream(qs):
        analyte = ANALYTES[code]
        has_entered = entered is not None and entered_unit
        # A censored result is a limit, not a number: "<10" in the character results, no numeric result
        # (SDTM IG 3.4, LB: a value below the limit of quantitation).
        yield (
            ctx.study.code,
            "LB",
            ctx.usubjid(subject),
            seq(subject),
            code,
            analyte.label[:40],
            LB_CATEGORY.get(code, ""),
            LB_SPECIMEN.get(code, "SERUM"),
            sign + (_num(entered) if has_entered else _num(value)),
            entered_unit if has_entered else analyte.unit,
            sign + _num(value),
            "" if sign else _num(value),
            analyte.unit,
            analyte.loinc or "",
            "Y" if visit == "BL" else "",
            "Y" if derived else "",
            _s(offset),
            visit,
            _date(on),
            _sdtm_day(on, ctx.local_date(day0_at, site)),
        )


LB_COLUMNS = [
    STUDYID,
    _domain("LB"),
    USUBJID,
    Column("LBSEQ", "integer", "Sequence number within the subject."),
    Column("LBTESTCD", "string", "Test code (the registry's result code).", values="; ".join(LAB_CODES)),
    Column("LBTEST", "string", "Test name."),
    Column("LBCAT", "string", "Category.", values="CHEMISTRY; HEMATOLOGY; IMMUNOLOGY; URINALYSIS"),
    Column("LBSPEC", "string", "Specimen.", values="SERUM; BLOOD; URINE"),
    Column("LBORRES", "string", "Result as entered; a censored result with its comparator (<10)."),
    Column("LBORRESU", "string", "Unit as entered."),
    Column("LBSTRESC", "string", "Standard result (character); a censored result with its comparator (<10)."),
    Column("LBSTRESN", "decimal", "Standard result (numeric), in LBSTRESU; empty when censored.", unit="see LBSTRESU"),
    Column("LBSTRESU", "string", "Standard unit (the catalogue's canonical unit)."),
    Column("LBLOINC", "string", "LOINC code."),
    Column("LBBLFL", "string", "Baseline flag (the BL visit).", values="Y"),
    Column("LBDRVFL", "string", "Derived flag (computed by the registry, e.g. eGFR).", values="Y"),
    VISITNUM,
    VISIT_SDTM,
    Column("LBDTC", "date", "Date of the visit (collection)."),
    Column("LBDY", "integer", "Study day (day 1 = RFSTDTC)."),
]

SLEDAI_TESTCD = {code: f"SLEDAI{n:02d}" for n, code in enumerate(SLEDAI_ITEMS, start=1)}


def _sdtm_qs(ctx: Context) -> Iterator[tuple]:
    def score(code: str):
        return Subquery(Result.objects.filter(visit_id=OuterRef("pk"), code=code).values("value")[:1])

    qs = (
        _visits(ctx)
        .annotate(day0_at=_first_infusion("patient_id"), sledai_total=score("SLEDAI2K"), pga=score("PGA"))
        .filter(Q(sledai_items__isnull=False) | Q(sledai_total__isnull=False) | Q(pga__isnull=False))
        .order_by("patient__subject_code", "target_date", "code")
        .values_list(
            "patient__site_id",
            "patient__subject_code",
            "code",
            "definition__offset_days",
            "actual_date",
            "day0_at",
            "sledai_items",
            "sledai_total",
            "pga",
        )
    )
    seq = _sequence()
    for site, subject, visit, offset, on, day0_at, items, total, pga in _stream(qs):
        tail = (_s(offset), visit, _date(on), _sdtm_day(on, ctx.local_date(day0_at, site)))

        def row(testcd, test, category, orres, points, derived=""):
            head = (ctx.study.code, "QS", ctx.usubjid(subject), seq(subject), testcd, test, category)  # noqa: B023
            return (*head, orres, points, points, derived, *tail)  # noqa: B023

        if items is not None:
            present = set(items)
            for code, item in SLEDAI_ITEMS.items():
                found = code in present
                points = str(item.weight if found else 0)
                yield row(SLEDAI_TESTCD[code], item.label[:40], "SLEDAI-2K", "PRESENT" if found else "ABSENT", points)
        if total is not None:
            derived = "Y" if items is not None else ""
            yield row("SLEDAITT", "SLEDAI-2K Total Score", "SLEDAI-2K", plain(total), plain(total), derived)
        if pga is not None:
            yield row("PGA", "Physician Global Assessment", "PHYSICIAN GLOBAL ASSESSMENT", plain(pga), plain(pga))


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
                *((SLEDAI_TESTCD[code], item.label) for code, item in SLEDAI_ITEMS.items()),
                ("SLEDAITT", "SLEDAI-2K Total Score"),
                ("PGA", "Physician Global Assessment"),
            ]
        ),
    ),
    Column("QSTEST", "string", "Question name."),
    Column("QSCAT", "string", "Category.", values="SLEDAI-2K; PHYSICIAN GLOBAL ASSESSMENT"),
    Column("QSORRES", "string", "Finding as collected (PRESENT/ABSENT for items; the score for totals)."),
    Column("QSSTRESC", "string", "Standard result (character): points."),
    Column(
        "QSSTRESN",
        "decimal",
        "Standard result (numeric): points (the item's weight when present, else 0).",
        unit="points",
    ),
    Column("QSDRVFL", "string", "Derived flag: the total computed from the items.", values="Y"),
    VISITNUM,
    VISIT_SDTM,
    Column("QSDTC", "date", "Date of the assessment (the visit)."),
    Column("QSDY", "integer", "Study day (day 1 = RFSTDTC)."),
]


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
            str(ae["grade"]),
            _yn(serious),
            *(_yn(ae[name]) for name in SERIOUS_FIELDS),
            AE_RELATEDNESS.get(ae["relatedness"], ""),
            AE_ACTION_ON_TREATMENT.get(ae["action_taken"], "NOT APPLICABLE"),
            AE_OTHER_ACTION.get(ae["action_taken"], ""),
            AE_OUTCOME.get(ae["outcome"], "UNKNOWN"),
            _date(ae["onset_date"]),
            _date(ae["resolution_date"]),
            _sdtm_day(ae["onset_date"], reference),
            _sdtm_day(ae["resolution_date"], reference),
        )


AE_SDTM_COLUMNS = [
    STUDYID,
    _domain("AE"),
    USUBJID,
    Column("AESEQ", "integer", "Sequence number within the subject (by onset)."),
    Column("AETERM", "string", "Reported term."),
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
    Column("AETOXGR", "string", "CTCAE v5 grade.", values="1; 2; 3; 4; 5"),
    Column("AESER", "string", "Serious event (ICH E2A).", values="Y; N"),
    *[
        Column(SDTM_SERIOUS[name], "string", f"Serious because it {label}.", values="Y; N")
        for name, label in c.SERIOUSNESS_CRITERIA
    ],
    Column(
        "AEREL",
        "string",
        "Causality to MSCT.",
        values="NOT RELATED; UNLIKELY RELATED; POSSIBLY RELATED; PROBABLY RELATED; DEFINITELY RELATED",
    ),
    Column(
        "AEACN", "string", "Action taken with the infusion.", values="DRUG INTERRUPTED; DRUG WITHDRAWN; NOT APPLICABLE"
    ),
    Column("AEACNOTH", "string", "Other action taken.", values="TREATMENT GIVEN; HOSPITALISED; OTHER"),
    Column("AEOUT", "string", "Outcome.", values="; ".join(AE_OUTCOME.values())),
    Column("AESTDTC", "date", "Start date."),
    Column("AEENDTC", "date", "End date (for a fatal event, the date of death)."),
    Column("AESTDY", "integer", "Study day of the start (day 1 = RFSTDTC)."),
    Column("AEENDY", "integer", "Study day of the end."),
]


SDTM_TABLES: list[Table] = [
    Table("sdtm/dm.csv", "SDTM-style DM (demographics).", DM_COLUMNS, _sdtm_dm),
    Table("sdtm/ex.csv", "SDTM-style EX (exposure: MSC infusions).", EX_COLUMNS, _sdtm_ex),
    Table("sdtm/cm.csv", "SDTM-style CM (concomitant medications).", CM_COLUMNS, _sdtm_cm),
    Table("sdtm/lb.csv", "SDTM-style LB (laboratory results).", LB_COLUMNS, _sdtm_lb),
    Table("sdtm/qs.csv", "SDTM-style QS (SLEDAI-2K items and total; PGA).", QS_COLUMNS, _sdtm_qs),
    Table("sdtm/ae.csv", "SDTM-style AE (adverse events).", AE_SDTM_COLUMNS, _sdtm_ae),
]
