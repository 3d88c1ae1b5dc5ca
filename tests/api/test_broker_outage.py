"""A broker outage during a write never turns a committed write into an error response.

Celery is pointed at a port where nothing listens, without connection retries, and the tests run with
real commits (transaction=True) so that anything queued "on commit" really tries to reach the broker.
"""

from __future__ import annotations

import pytest
from kombu.exceptions import OperationalError

from followup.models import Result, Visit
from patients.models import TransplantEvent
from tests.api.conftest import (
    LOT_A,
    SHARED_STUDY,
    SUBJECT_A,
    call,
    changed_tables,
    client_for,
    row_snapshot,
    transplant_payload,
    visit_record_by_key_payload,
)
from tests.api.routes import WRITES

pytestmark = pytest.mark.slow

DEAD_BROKER = "redis://127.0.0.1:1/0"


def _reset_connections(app) -> None:
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@pytest.fixture
def dead_broker(settings):
    from config.celery import app

    settings.CELERY_BROKER_URL = DEAD_BROKER
    dead = {
        "broker_url": DEAD_BROKER,
        "broker_write_url": DEAD_BROKER,
        "broker_connection_retry": False,
        "broker_connection_retry_on_startup": False,
        "broker_connection_max_retries": 0,
        "broker_connection_timeout": 1,
        "broker_transport_options": {"socket_connect_timeout": 1},
        "task_publish_retry": False,
        "task_always_eager": False,
    }
    saved = {name: app.conf.get(name) for name in dead}
    app.conf.update(dead)
    _reset_connections(app)
    try:
        yield app
    finally:
        app.conf.update(saved)
        _reset_connections(app)


@pytest.mark.django_db(transaction=True)
def test_the_broker_is_really_unreachable(dead_broker):
    from notifications.tasks import send_notifications

    with pytest.raises(OperationalError):
        send_notifications.delay()


@pytest.mark.django_db(transaction=True)
def test_transplant_posted_during_a_broker_outage_is_committed_and_answered_201(world, dead_broker):
    before = TransplantEvent.objects.filter(patient=world.a.patient).count()
    response = call(
        client_for(world.keys["a_rw"]),
        "POST",
        "/api/v1/transplants/",
        transplant_payload(SHARED_STUDY, SUBJECT_A, LOT_A),
    )
    assert response.status_code == 201, (response.status_code, response.content[:1000])
    assert TransplantEvent.objects.filter(patient=world.a.patient).count() == before + 1
    assert TransplantEvent.objects.filter(pk=response.json()["id"], infusion_number=2).exists()


@pytest.mark.django_db(transaction=True)
def test_visit_recorded_during_a_broker_outage_is_committed_and_answered_200(world, dead_broker):
    response = call(
        client_for(world.keys["a_rw"]),
        "POST",
        "/api/v1/visits/record/",
        visit_record_by_key_payload(SHARED_STUDY, SUBJECT_A, visit_code="M6"),
    )
    assert response.status_code == 200, (response.status_code, response.content[:1000])
    visit = Visit.objects.get(patient=world.a.patient, code="M6")
    assert visit.outcome == "completed"
    assert set(Result.objects.filter(visit=visit).values_list("code", flat=True)) == {
        "CREAT",
        "EGFR",
        "PLT",
        "SLEDAI2K",
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", WRITES, ids=[r.id for r in WRITES])
def test_every_write_during_a_broker_outage_is_committed_and_answered(world, dead_broker, route):
    key = world.keys["a_lots"] if route.lots else world.keys["a_rw"]
    before = row_snapshot()
    response = call(
        client_for(key), route.method, route.url(world, "a"), route.payload(world, "a"), **route.headers(world, "a")
    )
    assert response.status_code == route.success, (response.status_code, response.content[:1000])
    assert changed_tables(before, row_snapshot()) != {}, "the write is committed"
