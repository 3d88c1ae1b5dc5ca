"""The SDTM findings datasets: LB (laboratory results) and IS (autoantibodies), one record per result, built
by one function from the results of their tests, and QS (SLEDAI-2K items and total; PGA), one record per
item or score of a visit. Each flags the last observation of a test before exposure (--LOBXFL)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from django.db.models import OuterRef, Q, Subquery

from followup.catalogue import ANALYTES, SLEDAI_ITEMS
from followup.computations import plain
from followup.models import Result
from reporting.exports.common import Column, Context, _choices, _date, _num, _s, _sequence
from reporting.exports.sdtm_common import EPOCH, STUDYID, USUBJID, VISIT_SDTM, VISITNUM, _domain, _epoch, _sdtm_day
from reporting.exports.sdtm_terms import IMMUNOGENICITY_TESTS, LAB_TESTS, UNITS, ascii_text, ct_unit
from reporting.exports.sources import _first_infusion, _last_infusion, _results, _stream, _visits


def _last_before_exposure(rows: list, test: tuple[int, ...], flag: int, has_result) -> None:
    """Set the --LOBXFL of one subject's rows (in date order): the last row of each test with a result on
    or before the date of the first infusion (a visit on the infusion day is taken as before it). A test is
    the values at the indexes `test` (LB: the test code; IS: the test code and binding agent)."""
    last: dict[tuple, list] = {}
    for row, (date, reference) in rows:
        if date and reference and date <= reference and has_result(row):
            last[tuple(row[i] for i in test)] = row
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


def _specimen_findings(
    ctx: Context, domain: str, tests: Mapping, columns: list[Column], *, qualifier: str, test: tuple[str, ...]
) -> Iterator[tuple]:
    """The records of LB or IS (`domain`), one per result of a code of `tests`, in the order of `columns`: the
    test's code and name, its `qualifier` after them (LBCAT: the category; ISBDAGNT: the antigen bound), the
    result as entered and in the standard unit, the specimen, the flags, and --LOINC and --DRVFL where
    `columns` has them. --LOBXFL marks the last result of each test (the variables `test` name) before
    exposure."""
    names = [column.name for column in columns]
    loinc, derived_flag = f"{domain}LOINC" in names, f"{domain}DRVFL" in names
    test_at = tuple(names.index(domain + name) for name in test)
    orres_at, lobxfl_at = names.index(f"{domain}ORRES"), names.index(f"{domain}LOBXFL")
    qs = _specimen_results(ctx, tests)
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
            analyte, found = ANALYTES[code], tests[code]
            has_entered = entered is not None and entered_unit
            reference = ctx.local_date(day0_at, site)
            # A censored result is a limit, not a number: "<10" in the character results, no numeric result
            # (SDTM IG 3.4, LB: a value below the limit of quantitation).
            row = [
                ctx.study.code,
                domain,
                ctx.usubjid(subject),
                seq(subject),
                found.testcd,
                found.test,
                getattr(found, qualifier),
                sign + (_num(entered) if has_entered else _num(value)),
                ct_unit(entered_unit if has_entered else analyte.unit, field=f"{domain}ORRESU"),
                sign + _num(value),
                "" if sign else _num(value),
                ct_unit(analyte.unit, field=f"{domain}STRESU"),
                *([analyte.loinc or ""] if loinc else []),
                found.specimen,
                "",
                "Y" if visit == "BL" else "",
                *(["Y" if derived else ""] if derived_flag else []),
                _s(offset),
                visit,
                _epoch(ctx, site, on, day0_at, last_at),
                _date(on),
                _sdtm_day(on, reference),
            ]
            yield subject, row, (on, reference)

    def flush(group):
        _last_before_exposure(group, test_at, lobxfl_at, lambda row: row[orres_at] != "")

    return _by_subject(rows(), flush)


def _sdtm_lb(ctx: Context) -> Iterator[tuple]:
    """Laboratory results (`LAB_TESTS`) as LB records."""
    return _specimen_findings(ctx, "LB", LAB_TESTS, LB_COLUMNS, qualifier="category", test=("TESTCD",))


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


def _sdtm_is(ctx: Context) -> Iterator[tuple]:
    """Anti-dsDNA and ANA results as IS autoantibody records (`IMMUNOGENICITY_TESTS`), in the form of LB."""
    return _specimen_findings(
        ctx, "IS", IMMUNOGENICITY_TESTS, IS_COLUMNS, qualifier="binding_agent", test=("TESTCD", "BDAGNT")
    )


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
        _last_before_exposure(group, (QS_TESTCD,), QS_LOBXFL, lambda row: row[QS_ORRES] != "")

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
