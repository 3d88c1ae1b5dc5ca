"""`core.bulk`: the set-based writes of visit recording, below and above COPY_FROM rows (Django's bulk
statements, and COPY on PostgreSQL), and the history rows written beside them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import transaction

from core.audit import Door, audit_context, history_bulk_create, history_of_rows, history_values
from core.bulk import COPY_FROM, insert_rows, insert_values, update_rows, upsert_rows
from followup.models import ComputedOutcome, Result, Visit
from tests.factories import make_clinical

pytestmark = pytest.mark.django_db

CODES = ["CREAT", "C3", "C4", "PLT", "WBC", "HGB"]
SIZES = [3, COPY_FROM + 10]


def visits_for(count: int) -> list[int]:
    """Ids of `count` visits (of as many patients as it takes, 12 visits each)."""
    ids: list[int] = []
    while len(ids) < count:
        patient = make_clinical().patient
        ids += list(Visit.objects.filter(patient=patient).order_by("target_date").values_list("pk", flat=True))
    return ids[:count]


def new_results(count: int) -> list[Result]:
    clinical = make_clinical()
    visits = list(Visit.objects.filter(patient=clinical.patient).order_by("target_date"))
    pairs = [(visit, code) for code in CODES for visit in visits][:count]
    assert len(pairs) == count
    return [
        Result(
            visit=visit, code=code, value=Decimal(n) + Decimal("0.12345"), entered_value=Decimal(n), entered_unit="x"
        )
        for n, (visit, code) in enumerate(pairs, start=1)
    ]


@pytest.mark.parametrize("count", SIZES)
def test_insert_rows_stores_every_row_and_gives_each_its_key(count):
    rows = new_results(count)
    with transaction.atomic():
        insert_rows(Result, rows)
    assert all(row.pk for row in rows) and len({row.pk for row in rows}) == count
    stored = {r.pk: r for r in Result.objects.all()}
    for n, row in enumerate(rows, start=1):
        db = stored[row.pk]
        assert (db.visit_id, db.code, db.entered_value, db.entered_unit) == (row.visit_id, row.code, n, "x")
        assert db.value == Decimal(n) + Decimal("0.1234") or db.value == Decimal(n) + Decimal("0.1235")
        assert db.created_at is not None and db.updated_at is not None  # auto_now fields stamped


@pytest.mark.parametrize("count", SIZES)
def test_insert_values_gives_the_keys_in_order_and_stores_the_values_as_given(count):
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)  # not replaced by an auto_now stamp
    names = (
        "created_at",
        "updated_at",
        "visit_id",
        "code",
        "value",
        "entered_value",
        "entered_unit",
        "derived",
        "comparator",
    )
    rows = [(stamp, stamp, r.visit_id, r.code, r.value, r.entered_value, "x", False, "") for r in new_results(count)]
    with audit_context(door=Door.API, actor="api-key:test"), transaction.atomic():
        keys = insert_values(Result, names, rows, keys=True)
        history_values(
            Result, ("id", *names), [(k, *row) for k, row in zip(keys, rows, strict=True)], reasons=["r"] * count
        )
    assert len(set(keys)) == count
    stored = {r.pk: r for r in Result.objects.all()}
    assert [(stored[k].visit_id, stored[k].code, stored[k].created_at, stored[k].updated_at) for k in keys] == [
        (row[2], row[3], stamp, stamp) for row in rows
    ]
    history = {h.id: h for h in Result.history.all()}
    assert set(history) == set(keys)
    assert {(h.history_type, h.history_change_reason, h.updated_at) for h in history.values()} == {("+", "r", stamp)}
    with pytest.raises(ValueError, match="need exactly the fields"):
        history_values(Result, names, rows, reasons=["r"] * count)  # the key is missing


@pytest.mark.parametrize("count", SIZES)
def test_update_rows_writes_the_named_fields_only(count):
    rows = insert_rows(Result, new_results(count))
    for row in rows:
        row.value, row.entered_unit = Decimal("7"), "changed, but not written"
    with transaction.atomic():
        update_rows(Result, rows, ["value"])
    assert set(Result.objects.values_list("value", "entered_unit")) == {(Decimal("7.0000"), "x")}


@pytest.mark.parametrize("count", SIZES)
def test_upsert_rows_updates_in_place_and_inserts_the_new(count):
    visits = visits_for(count)
    first = ComputedOutcome.objects.create(visit_id=visits[0], algorithm_version="old", definitions={}, sledai=1)
    fresh = [
        ComputedOutcome(visit_id=visit_id, algorithm_version="new", definitions={"k": "v"}, sledai=5, notes=["n"])
        for visit_id in visits
    ]
    with transaction.atomic():
        upsert_rows(ComputedOutcome, fresh, unique="visit", field_names=["algorithm_version", "definitions", "sledai"])
    stored = ComputedOutcome.objects.order_by("visit_id")
    assert [o.visit_id for o in stored] == visits
    assert {(o.algorithm_version, o.sledai) for o in stored} == {("new", Decimal("5.00"))}
    assert stored[0].pk == first.pk  # updated in place: the id partners know stays
    assert stored[0].notes == [] and stored[1].notes == ["n"]  # an existing row keeps what was not named


@pytest.mark.parametrize("count", SIZES)
def test_history_rows_are_attributed_like_any_change(count):
    rows = insert_rows(Result, new_results(count))
    rows[0]._change_reason = "re-read from the lab report"
    moment = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
    with audit_context(door=Door.API, actor="api-key:test"), transaction.atomic():
        history_bulk_create(Result, rows, update=True, date=moment)
    history = {h.id: h for h in Result.history.all()}
    assert set(history) == {row.pk for row in rows}
    assert {(h.history_type, h.history_door, h.history_actor, h.history_date) for h in history.values()} == {
        ("~", Door.API, "api-key:test", moment)
    }
    assert history[rows[0].pk].history_change_reason == "re-read from the lab report"
    assert history[rows[1].pk].history_change_reason == ""
    assert history[rows[1].pk].value == Result.objects.get(pk=rows[1].pk).value


@pytest.mark.parametrize("count", SIZES)
def test_upsert_rows_with_compare_leaves_unchanged_rows_and_their_stamps_alone(count):
    visits = visits_for(count)

    def outcomes(sledai_of_first: int) -> list[ComputedOutcome]:
        return [
            ComputedOutcome(
                visit_id=v, algorithm_version="a", definitions={"k": "1"}, sledai=sledai_of_first if i == 0 else 2
            )
            for i, v in enumerate(visits)
        ]

    fields = ["algorithm_version", "definitions", "sledai"]
    with transaction.atomic():
        assert upsert_rows(ComputedOutcome, outcomes(2), unique="visit", field_names=[*fields, "computed_at"]) == len(
            visits
        )
    stamps = dict(ComputedOutcome.objects.values_list("visit_id", "computed_at"))
    with transaction.atomic():
        written = upsert_rows(
            ComputedOutcome, outcomes(2), unique="visit", field_names=[*fields, "computed_at"], compare=fields
        )
    assert written == 0
    assert dict(ComputedOutcome.objects.values_list("visit_id", "computed_at")) == stamps
    with transaction.atomic():
        written = upsert_rows(
            ComputedOutcome, outcomes(9), unique="visit", field_names=[*fields, "computed_at"], compare=fields
        )
    assert written == 1
    after = dict(ComputedOutcome.objects.values_list("visit_id", "computed_at"))
    assert [v for v in visits if after[v] != stamps[v]] == [visits[0]]
    assert ComputedOutcome.objects.get(visit_id=visits[0]).sledai == Decimal("9.00")


@pytest.mark.parametrize("count", SIZES)
def test_history_of_rows_copies_each_row_as_it_is_in_the_database(count):
    rows = insert_rows(Result, new_results(count))
    Result.objects.filter(pk=rows[0].pk).update(value=Decimal("42"))  # the database's value, not the instance's
    moment = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
    reasons = ["re-read from the lab report"] + [""] * (count - 1)
    with audit_context(door=Door.API, actor="api-key:test"), transaction.atomic():
        history_of_rows(Result, [row.pk for row in rows], reasons=reasons, update=True, date=moment)
    history = {h.id: h for h in Result.history.all()}
    live = {r.pk: r for r in Result.objects.all()}
    assert set(history) == set(live)
    for pk, row in live.items():
        h = history[pk]
        assert (h.visit_id, h.code, h.value, h.entered_value, h.entered_unit, h.derived, h.updated_at) == (
            row.visit_id,
            row.code,
            row.value,
            row.entered_value,
            row.entered_unit,
            row.derived,
            row.updated_at,
        )
        assert (h.history_type, h.history_door, h.history_actor, h.history_date) == (
            "~",
            Door.API,
            "api-key:test",
            moment,
        )
    assert history[rows[0].pk].value == Decimal("42")
    assert history[rows[0].pk].history_change_reason == "re-read from the lab report"
    assert history[rows[1].pk].history_change_reason == ""
