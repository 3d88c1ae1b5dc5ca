"""Each record's data quality in the tidy CSVs and the data dictionary: open (or answered) queries, source
verification and signature, read with subqueries of each table's one statement."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from followup.models import Result
from quality.services.queries import query_answer, query_close, query_raise
from quality.services.review import sdv_mark, signature_sign
from reporting.exports.archive import DICTIONARY, TABLES
from reporting.exports.common import Context
from reporting.models import ExportJob
from tests.quality.conftest import PASSWORD

pytestmark = pytest.mark.django_db

QUALITY = ["open_queries", "source_verified", "signed"]
TABLE = {t.name: t for t in TABLES}


def context(clinical) -> Context:
    site = clinical.site
    job = ExportJob.objects.create(study=clinical.study, site_ids=[site.pk])
    return Context(
        job=job, study=clinical.study, site_ids=[site.pk], sites={site.pk: site}, generated_at=timezone.now()
    )


def rows(ctx: Context, name: str) -> list[dict]:
    table = TABLE[name]
    names = [c.name for c in table.columns]
    return [dict(zip(names, row, strict=True)) for row in table.rows(ctx)]


def test_the_tables_carry_no_quality_marks_before_any_review(clinical):
    ctx = context(clinical)
    (patient,) = rows(ctx, "tidy/patients.csv")
    (ae,) = rows(ctx, "tidy/adverse_events.csv")
    m1 = next(r for r in rows(ctx, "tidy/visits.csv") if r["visit"] == "M1")
    for row in (patient, ae, m1):
        assert [row[name] for name in QUALITY] == [0, "N", "N"]


def test_queries_verifications_and_signatures_reach_their_rows(clinical, monitor, investigator_a):
    visit = clinical.visit("M1")
    creat = Result.objects.get(visit=visit, code="CREAT")
    query_raise(target=creat, text="Units?", actor=monitor, field="CREAT")
    answered = query_raise(target=visit, text="Date?", actor=monitor, field="actual_date")
    query_answer(query=answered, text="As in the source.", actor=investigator_a)
    closed = query_raise(target=clinical.ae, text="Grade?", actor=monitor)
    query_close(query=closed, actor=monitor, text="Fine.")
    query_raise(target=clinical.patient, text="Consent?", actor=monitor, field="consent_date")
    sdv_mark(record=visit, actor=monitor)
    signature_sign(record=clinical.ae, actor=investigator_a, password=PASSWORD)

    ctx = context(clinical)
    m1 = next(r for r in rows(ctx, "tidy/visits.csv") if r["visit"] == "M1")
    assert [m1[name] for name in QUALITY] == [2, "Y", "N"]  # its own query (answered) and its result's
    others = [r for r in rows(ctx, "tidy/visits.csv") if r["visit"] != "M1"]
    assert others and all(r["open_queries"] == 0 and r["source_verified"] == "N" for r in others)
    results = {r["code"]: r for r in rows(ctx, "tidy/results.csv") if r["visit"] == "M1"}
    assert [results["CREAT"][name] for name in QUALITY] == [1, "Y", "N"]
    assert [results["C3"][name] for name in QUALITY] == [0, "Y", "N"]
    (ae,) = rows(ctx, "tidy/adverse_events.csv")
    assert [ae[name] for name in QUALITY] == [0, "N", "Y"]  # its only query is closed
    (patient,) = rows(ctx, "tidy/patients.csv")
    assert [patient[name] for name in QUALITY] == [1, "N", "N"]


def test_each_table_is_one_statement_however_many_records_are_queried(clinical, monitor):
    visit = clinical.visit("M1")
    ctx = context(clinical)
    names = ["tidy/patients.csv", "tidy/visits.csv", "tidy/results.csv", "tidy/adverse_events.csv"]
    before = {}
    for name in names:
        with CaptureQueriesContext(connection) as captured:
            rows(ctx, name)
        before[name] = len(captured)
    for result in Result.objects.filter(visit=visit):
        query_raise(target=result, text="Check", actor=monitor, field=result.code)
    query_raise(target=clinical.ae, text="Check", actor=monitor)
    for name in names:
        with CaptureQueriesContext(connection) as captured:
            rows(ctx, name)
        assert len(captured) == before[name], name
    # One statement each (the visits' states also read the sites' time zones once).
    assert before == {name: 2 if name == "tidy/visits.csv" else 1 for name in names}


def test_the_data_dictionary_describes_the_quality_columns(clinical):
    ctx = context(clinical)
    described = {(r[0], r[1]): r for r in DICTIONARY.rows(ctx)}
    for name in ["tidy/patients.csv", "tidy/visits.csv", "tidy/results.csv", "tidy/adverse_events.csv"]:
        for column in QUALITY:
            assert (name, column) in described, (name, column)
    assert "its results" in described[("tidy/visits.csv", "open_queries")][5]
    assert described[("tidy/adverse_events.csv", "signed")][6] == "Y; N"
