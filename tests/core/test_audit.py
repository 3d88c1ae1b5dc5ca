"""The audit trail: history rows for every change, with door, actor and reason; append-only on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import gc
import zoneinfo
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from django.http import HttpResponse
from django.test import RequestFactory

from core.audit import AuditDoorMiddleware, Door, audit_context, current_audit_context, history_tables
from patients.models import Patient, TransplantEvent
from patients.services import patient_update, patient_withdraw, transplant_record
from tests.factories import CellProductFactory, PatientFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_now")]


def test_enrolling_a_patient_leaves_a_creation_row(study, site_a):
    patient = PatientFactory(study=study, site=site_a)

    rows = list(patient.history.all())
    assert len(rows) == 1
    assert rows[0].history_type == "+"
    assert rows[0].subject_code == patient.subject_code


def test_updating_a_patient_leaves_a_row_with_the_reason(study, site_a):
    patient = PatientFactory(study=study, site=site_a, birth_year=1988)

    patient_update(patient=patient, reason="birth year transcribed wrongly", birth_year=1987)

    assert patient.history.count() == 2
    latest = patient.history.latest()
    assert latest.history_type == "~"
    assert latest.birth_year == 1987
    assert latest.history_change_reason == "birth year transcribed wrongly"
    assert patient.history.earliest().birth_year == 1988


def test_status_change_leaves_a_row_with_the_reason(study, site_a):
    patient = PatientFactory(study=study, site=site_a)

    patient_withdraw(patient=patient, on_date=dt.date(2026, 2, 1), reason="moved abroad")

    latest = patient.history.latest()
    assert latest.status == "withdrawn"
    assert latest.history_change_reason == "moved abroad"


def test_history_row_records_door_and_actor_of_the_context(study, site_a):
    with audit_context(door=Door.COMMAND, actor="seed"):
        patient = PatientFactory(study=study, site=site_a)
        patient_update(patient=patient, reason="seed correction", refractory_notes="CTX x6 failed")

    rows = list(patient.history.order_by("history_id"))
    assert [(row.history_door, row.history_actor) for row in rows] == [("command", "seed"), ("command", "seed")]


def test_history_row_outside_any_context_is_attributed_to_the_system(study, site_a):
    patient = PatientFactory(study=study, site=site_a)

    row = patient.history.get()
    assert row.history_door == "system"
    assert row.history_actor == ""


def test_history_row_records_the_user_of_the_context(study, site_a, coordinator_a):
    with audit_context(door=Door.ADMIN, user=coordinator_a):
        patient = PatientFactory(study=study, site=site_a, actor=coordinator_a)

    row = patient.history.get()
    assert row.history_door == "admin"
    assert row.history_actor == "coord_a"
    assert row.history_user_id == coordinator_a.pk


def test_context_ends_with_its_block(study, site_a):
    with audit_context(door=Door.API, actor="partner-key-1"):
        pass
    patient = PatientFactory(study=study, site=site_a)

    assert patient.history.get().history_door == "system"


def _view_leaving_its_block_open(opened: list):
    """A view that enters an API key's block and fails to leave it (as a view that raised would)."""

    def view(request):
        block = audit_context(door=Door.API, actor="partner-key-1")
        block.__enter__()
        opened.append(block)
        return HttpResponse()

    return view


def test_a_block_left_open_by_a_view_ends_with_the_request(study, site_a):
    opened = []

    AuditDoorMiddleware(_view_leaving_its_block_open(opened))(RequestFactory().get("/api/v1/patients/"))
    patient = PatientFactory(study=study, site=site_a)

    assert opened and current_audit_context().door == Door.SYSTEM
    assert patient.history.get().history_door == "system"


def test_a_block_left_open_changes_nothing_when_it_is_collected(study, site_a):
    opened = []
    AuditDoorMiddleware(_view_leaving_its_block_open(opened))(RequestFactory().get("/api/v1/patients/"))

    with audit_context(door=Door.COMMAND, actor="seed"):
        opened.clear()
        gc.collect()
        patient = PatientFactory(study=study, site=site_a)

    assert patient.history.get().history_door == "command"
    assert current_audit_context().door == Door.SYSTEM


def test_a_request_inside_a_block_keeps_the_blocks_attribution(study, site_a):
    with audit_context(door=Door.COMMAND, actor="seed"):
        AuditDoorMiddleware(_view_leaving_its_block_open([]))(RequestFactory().get("/api/v1/patients/"))
        patient = PatientFactory(study=study, site=site_a)

    row = patient.history.get()
    assert (row.history_door, row.history_actor) == ("command", "seed")


def test_an_admin_request_is_attributed_to_its_user_and_only_while_it_lasts(coordinator_a):
    seen = []
    request = RequestFactory().get("/admin/")
    request.user = coordinator_a

    AuditDoorMiddleware(lambda request: seen.append(current_audit_context()) or HttpResponse())(request)

    assert [(ctx.door, ctx.actor, ctx.user_id) for ctx in seen] == [("admin", "coord_a", coordinator_a.pk)]
    assert current_audit_context().door == Door.SYSTEM


def test_recording_an_infusion_leaves_a_history_row(study, site_a):
    patient = PatientFactory(study=study, site=site_a)
    lot = CellProductFactory(study=study, site=site_a)

    with audit_context(door=Door.API, actor="partner-key-1"):
        event = transplant_record(
            patient=patient,
            lot=lot,
            infused_at=dt.datetime(2026, 1, 15, 10, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai")),
            weight_kg=Decimal("60.0"),
            dose_cells_per_kg=1_000_000,
        )

    row = event.history.get()
    assert (row.history_type, row.history_door, row.history_actor) == ("+", "api", "partner-key-1")
    assert row.total_cells == 60_000_000


def test_every_clinical_model_has_an_audited_history_table():
    tables = set(history_tables())

    for model in (Patient, TransplantEvent):
        assert model.history.model._meta.db_table in tables
    assert "followup_historicalvisit" in tables
    assert "registry_historicalcellproduct" in tables


@pytest.mark.postgres
def test_history_table_refuses_update_and_delete_but_accepts_insert(study, site_a):
    patient = PatientFactory(study=study, site=site_a)
    row = patient.history.get()
    table = connection.ops.quote_name(Patient.history.model._meta.db_table)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET subject_code = 'TAMPERED' WHERE history_id = %s", [row.history_id])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE history_id = %s", [row.history_id])

    with connection.cursor() as cursor:
        columns = [
            connection.ops.quote_name(column.name)
            for column in connection.introspection.get_table_description(cursor, Patient.history.model._meta.db_table)
            if column.name != "history_id"
        ]
        listed = ", ".join(columns)
        cursor.execute(
            f"INSERT INTO {table} ({listed}) SELECT {listed} FROM {table} WHERE history_id = %s", [row.history_id]
        )

    assert patient.history.count() == 2
    assert set(patient.history.values_list("subject_code", flat=True)) == {patient.subject_code}


@pytest.mark.postgres
def test_every_history_table_has_the_append_only_trigger():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT event_object_table FROM information_schema.triggers WHERE trigger_name = 'registry_append_only'"
        )
        guarded = {name for (name,) in cursor.fetchall()}

    assert set(history_tables()) <= guarded
