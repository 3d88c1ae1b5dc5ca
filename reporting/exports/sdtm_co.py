"""The SDTM CO (comments) dataset: one row per open or answered data clarification query of the study's
sites, its question in COVAL (in ASCII, in English, split over COVAL1 and COVAL2 beyond 200 characters),
pointing at the record it is about where SDTM has one: an adverse event by AESEQ (numbered as in AE), a
patient's own data by DM; a visit, a result, a medication or an infusion at the subject level, with the visit
and the field named in COREF."""

from __future__ import annotations

from collections.abc import Iterator

from django.utils import translation

from followup.models import AdverseEvent, Result, Visit
from quality.checks.rules import question
from quality.models import Query
from reporting.exports.common import Column, Context, _date
from reporting.exports.sdtm_common import _sdtm_day
from reporting.exports.sdtm_terms import ascii_text
from reporting.exports.sources import LIVE_QUERY_STATES, _first_infusion, _stream

COVAL_CHARS = 200
COVAL_PARTS = 3


def _coval(text: str, pk: int) -> list[str]:
    """The comment over COVAL, COVAL1 and COVAL2; a longer one ends with a note naming the query."""
    text = ascii_text(text)
    limit = COVAL_CHARS * COVAL_PARTS
    if len(text) > limit:
        note = f" [truncated: query #{pk}]"
        text = text[: limit - len(note)] + note
    return [text[i : i + COVAL_CHARS] for i in range(0, limit, COVAL_CHARS)]


def _ae_sequence(ctx: Context) -> dict[int, int]:
    """AESEQ of every adverse event of the export (as `_sdtm_ae` numbers them: by onset within the subject)."""
    rows = (
        AdverseEvent.objects.for_sites(ctx.site_ids)
        .filter(patient__study_id=ctx.study.pk)
        .order_by("patient__subject_code", "onset_date", "pk")
        .values_list("pk", "patient_id")
    )
    seq: dict[int, int] = {}
    counts: dict[int, int] = {}
    for pk, patient in _stream(rows):
        counts[patient] = counts.get(patient, 0) + 1
        seq[pk] = counts[patient]
    return seq


def _visit_codes(queries: list[dict]) -> dict[tuple[str, int], str]:
    """{(model, object id): visit code} of the queries on visits and results (two queries at most)."""
    ids = {"visit": set(), "result": set()}
    for q in queries:
        if q["content_type__model"] in ids and q["content_type__app_label"] == "followup":
            ids[q["content_type__model"]].add(q["object_id"])
    codes = {}
    if ids["visit"]:
        for pk, code in Visit.objects.filter(pk__in=ids["visit"]).values_list("pk", "code"):
            codes[("visit", pk)] = code
    if ids["result"]:
        for pk, code in Result.objects.filter(pk__in=ids["result"]).values_list("pk", "visit__code"):
            codes[("result", pk)] = code
    return codes


def _sdtm_co(ctx: Context) -> Iterator[tuple]:
    queries = list(
        Query.objects.for_sites(ctx.site_ids)
        .filter(study_id=ctx.study.pk, state__in=LIVE_QUERY_STATES)
        .annotate(day0_at=_first_infusion("patient_id"))
        .order_by("patient__subject_code", "created_at", "pk")
        .values(
            "pk",
            "patient__site_id",
            "patient__subject_code",
            "content_type__app_label",
            "content_type__model",
            "object_id",
            "field",
            "rule",
            "detail",
            "text",
            "created_at",
            "day0_at",
        )
    )
    ae_seq = _ae_sequence(ctx) if any(q["content_type__model"] == "adverseevent" for q in queries) else {}
    visits = _visit_codes(queries)
    counts: dict[str, int] = {}
    with translation.override("en"):
        for q in queries:
            subject, model = q["patient__subject_code"], q["content_type__model"]
            counts[subject] = counts.get(subject, 0) + 1
            rdomain = idvar = idvarval = ""
            if model == "adverseevent" and q["object_id"] in ae_seq:
                rdomain, idvar, idvarval = "AE", "AESEQ", str(ae_seq[q["object_id"]])
            elif model == "patient":
                rdomain = "DM"
            ref = [f"QUERY {q['pk']}"]
            if (model, q["object_id"]) in visits:
                ref.append(f"VISIT {visits[(model, q['object_id'])]}")
            elif model in ("concomitantmedication", "transplantevent"):
                ref.append("CM" if model == "concomitantmedication" else "EX")
            if q["field"]:
                ref.append(q["field"])
            site = q["patient__site_id"]
            on, day1 = ctx.local_date(q["created_at"], site), ctx.local_date(q["day0_at"], site)
            text = (question(q["rule"], q["detail"]) if q["rule"] else "") or q["text"]
            yield (
                ctx.study.code,
                "CO",
                rdomain,
                ctx.usubjid(subject),
                counts[subject],
                idvar,
                idvarval,
                " ".join(ref),
                *_coval(text, q["pk"]),
                _date(on),
                _sdtm_day(on, day1),
            )


CO_COLUMNS = [
    Column("STUDYID", "string", "Study identifier (study code)."),
    Column("DOMAIN", "string", "Domain abbreviation.", values="CO"),
    Column(
        "RDOMAIN",
        "string",
        "Domain of the record the query is about (AE, DM); blank for a query at the subject level.",
        values="AE; DM",
    ),
    Column("USUBJID", "string", "Unique subject identifier: STUDYID-SUBJID."),
    Column("COSEQ", "integer", "Sequence number within the subject (by the time the query was raised)."),
    Column("IDVAR", "string", "Variable identifying the record in RDOMAIN.", values="AESEQ"),
    Column("IDVARVAL", "string", "Value of IDVAR."),
    Column("COREF", "string", "The query's number in the registry, the visit and the field or item it is about."),
    Column("COVAL", "string", "The question of an open or answered query, in ASCII (first 200 characters)."),
    Column("COVAL1", "string", "The question, characters 201-400."),
    Column("COVAL2", "string", "The question, characters 401-600."),
    Column("CODTC", "date", "Date the query was raised (site's local date)."),
    Column("CODY", "integer", "Study day the query was raised (day 1 = RFSTDTC)."),
]
