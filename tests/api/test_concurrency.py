"""Races reproduced against a live server on PostgreSQL: threads wait on a barrier, then send the same request
at once. Exactly one create of a code succeeds (the rest 409, or 400 once the first is committed); of updates
naming the same version exactly one succeeds (the rest 412); no answer is a 5xx; the stored row changed once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import requests

from core.api.etags import etag_of
from followup.models import AdverseEvent, Visit
from patients.models import ConcomitantMedication, Patient
from registry.models import CellProduct
from tests.api.conftest import (
    SHARED_STUDY,
    SUBJECT_A,
    lot_payload,
    patient_payload,
    visit_record_by_key_payload,
    visit_record_payload,
)
from tests.concurrency import burst, released_together

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.slow]

BURST = 12


def statuses(answers) -> Counter:
    return Counter(answer.status_code for answer in answers)


def assert_problems(answers, expected: set[int], field: str | None = None) -> None:
    for answer in answers:
        assert answer.status_code < 500, (answer.status_code, answer.text)
        if answer.status_code in expected:
            assert answer.headers["Content-Type"].startswith("application/problem+json"), answer.text
            if field is not None:
                assert field in [e["field"] for e in answer.json().get("errors", [])], answer.text


def headers(key: str, **extra) -> dict:
    return {"Authorization": f"Api-Key {key}", **extra}


# Concurrent creates of one code ------------------------------------------------------------------------


def test_concurrent_enrolments_of_one_subject_code_store_one(world, live_server):
    url = f"{live_server.url}/api/v1/patients/"
    payload = patient_payload(subject_code="A-RACE")
    answers = burst(BURST, lambda s: s.post(url, json=payload, headers=headers(world.keys["a_rw"]), timeout=60))
    counts = statuses(answers)
    print(f"patients burst of {BURST}: {dict(counts)}")
    assert counts[201] == 1, counts
    assert counts[201] + counts[409] + counts[400] == BURST, counts
    assert_problems(answers, {400, 409}, field="subject_code")
    assert Patient.objects.filter(subject_code="A-RACE").count() == 1


def test_concurrent_creates_of_one_lot_number_store_one(world, live_server):
    url = f"{live_server.url}/api/v1/lots/"
    payload = lot_payload(SHARED_STUDY, world.a.lot.donor.code, lot_number="LOT-RACE")
    answers = burst(BURST, lambda s: s.post(url, json=payload, headers=headers(world.keys["a_lots"]), timeout=60))
    counts = statuses(answers)
    print(f"lots burst of {BURST}: {dict(counts)}")
    assert counts[201] == 1, counts
    assert counts[201] + counts[409] + counts[400] == BURST, counts
    assert_problems(answers, {400, 409}, field="lot_number")
    assert CellProduct.objects.filter(lot_number="LOT-RACE").count() == 1


# Concurrent updates naming one version -----------------------------------------------------------------


def _updates(world):
    """(name, object, URL path, key, body) of every update that names a version."""
    m1 = world.a.visit("M1")
    return [
        ("patient", world.a.patient, f"patients/{world.a.patient.pk}/", "a_rw", {"reason": "Re-read"}),
        ("medication", world.a.medication, f"medications/{world.a.medication.pk}/", "a_rw", {"reason": "Tapered"}),
        ("adverse event", world.a.adverse_event, f"adverse-events/{world.a.adverse_event.pk}/", "a_rw", {}),
        ("lot", world.a.lot, f"lots/{world.a.lot.lot_number}/", "a_lots", {"reason": "Recounted"}),
        ("visit correction", m1, f"visits/{m1.pk}/record/", "a_rw", None),
        ("visit correction by key", m1, "visits/record/", "a_rw", None),
    ]


def _body(name: str, index: int, base: dict | None) -> dict:
    # Each thread changes the object differently, so a lost update would show in the stored row.
    if name == "patient":
        return {**base, "birth_year": 1960 + index}
    if name == "medication":
        return {**base, "dose": str(100 + index)}
    if name == "adverse event":
        return {"grade": 1 + index % 4, "reason": f"Regraded by call {index}"}
    if name == "lot":
        return {**base, "units": 20 + index}
    results = {"PLT": {"value": 200 + index}}
    if name == "visit correction":
        return visit_record_payload(actual_date="2025-04-02", results=results, reason=f"Re-read {index}")
    return visit_record_by_key_payload(
        SHARED_STUDY, SUBJECT_A, visit_code="M1", actual_date="2025-04-02", results=results, reason=f"Re-read {index}"
    )


@pytest.mark.parametrize(
    "name", ["patient", "medication", "adverse event", "lot", "visit correction", "visit correction by key"]
)
def test_concurrent_updates_naming_one_version_change_it_once(world, live_server, name):
    _, obj, path, key, base = next(u for u in _updates(world) if u[0] == name)
    obj.refresh_from_db()
    etag = etag_of(obj)
    history_before = obj.history.count()
    method = "post" if path.endswith("record/") else "patch"
    url = f"{live_server.url}/api/v1/{path}"
    counter = iter(range(BURST))
    lock = threading.Lock()

    def send(session):
        with lock:
            index = next(counter)
        body = _body(name, index, base)
        return getattr(session, method)(
            url, json=body, headers=headers(world.keys[key], **{"If-Match": etag}), timeout=60
        )

    answers = burst(BURST, send)
    counts = statuses(answers)
    print(f"{name} burst of {BURST}: {dict(counts)}")
    assert counts == Counter({200: 1, 412: BURST - 1}), counts
    assert_problems(answers, {412})
    winner = next(a for a in answers if a.status_code == 200)
    obj.refresh_from_db()
    assert winner.headers["ETag"] == etag_of(obj)
    assert obj.history.count() == history_before + 1  # changed once, by the one that succeeded
    if isinstance(obj, Visit):
        stored = {r["code"]: r for r in winner.json()["results"]}
        assert float(obj.results.get(code="PLT").value) == float(stored["PLT"]["value"])
    else:
        field = {Patient: "birth_year", ConcomitantMedication: "dose", CellProduct: "units", AdverseEvent: "grade"}
        name = field[type(obj)]
        assert float(getattr(obj, name)) == float(winner.json()[name])


# The throttle across processes -------------------------------------------------------------------------


def test_database_cache_counts_every_concurrent_increase(settings):
    """Threads (each its own connection) increase one counter at once: every increase is counted."""
    from core.cache import DatabaseCache

    cache = DatabaseCache(settings.CACHE_TABLE, {})
    cache.set("race-counter", 0, timeout=60)
    n = 16
    seen = released_together(n, lambda _index: cache.incr("race-counter"), reraise=True)
    print(f"database cache: {n} concurrent increases, counter {cache.get('race-counter')}")
    assert sorted(seen) == list(range(1, n + 1))
    assert cache.get("race-counter") == n


@pytest.fixture
def gunicorn(world, settings, tmp_path):
    """`start(cache)`: the registry under gunicorn with 2 worker processes on this test's database, a rate
    of 10 requests a minute per key, and the shared cache `cache` ("database" or "redis")."""
    import os
    import subprocess
    import sys
    import time

    from django.db import connection

    from tests.integration.support import free_port

    processes = []

    def start(cache: str) -> str:
        port = free_port()
        db = connection.settings_dict
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "API_RATE_LIMIT": "10/minute",
            "REGISTRY_VAR_DIR": str(tmp_path),
        }
        env.pop("REDIS_URL", None)
        if cache == "redis":
            env["REDIS_URL"] = settings.REDIS_URL
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}"]
            + ["--workers", "2", "--no-control-socket"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/livez", timeout=10).status_code == 200:
                    return url
            except requests.RequestException:
                time.sleep(0.2)
        pytest.fail("gunicorn did not start")

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize("cache", ["database", "redis"])
def test_the_rate_limit_holds_across_worker_processes(world, gunicorn, cache, settings):
    if cache == "redis" and not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    url = gunicorn(cache)
    key = world.keys["b_rw"]  # a key no other test of this run has used within the minute
    answers = burst(6, lambda s: [s.get(f"{url}/api/v1/studies/", headers=headers(key), timeout=60) for _ in range(5)])
    answers = [answer for group in answers for answer in group]
    counts = statuses(answers)
    print(f"rate 10/minute, 30 requests over 6 connections to 2 workers ({cache} cache): {dict(counts)}")
    assert counts == Counter({200: 10, 429: 20}), counts
    assert_problems(answers, {429})
