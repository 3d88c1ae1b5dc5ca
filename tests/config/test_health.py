"""`/healthz`: one JSON object naming each check, 200 when all pass, 503 otherwise, and cheap."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from config import health, heartbeats
from notifications.constants import NotificationState
from notifications.models import Notification

pytestmark = pytest.mark.django_db

CHECKS = {"database", "migrations", "broker", "beat", "workers", "notifications_failed"}


@pytest.fixture(autouse=True)
def _fresh(tmp_path, settings):
    """A writable filesystem broker, an empty cache, and migrations not yet known to be applied."""
    from django.core.cache import cache

    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path)}
    cache.clear()
    health._migrations_applied["ok"] = False
    yield
    cache.clear()


def alive():
    heartbeats.record_beat_tick()
    heartbeats.record_worker_alive(force=True)


def failed_row(site, *, claimed_at):
    return Notification.objects.create(
        kind="visit_reminder",
        object_id=1000 + Notification.objects.count(),
        stage="due",
        recipient_email="someone@registry.example",
        site=site,
        state=NotificationState.FAILED,
        send_after=claimed_at,
        claimed_at=claimed_at,
        failed_at=claimed_at,
    )


def test_all_checks_pass_answers_200_naming_each_check(client):
    alive()
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == CHECKS
    assert all(check["ok"] for check in body["checks"].values())


def test_without_beat_or_worker_heartbeat_answers_503_naming_them(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert {name for name, check in checks.items() if not check["ok"]} == {"beat", "workers"}
    assert checks["beat"]["age_seconds"] is None


def test_beat_is_stale_after_twice_the_sweep_interval(client):
    import time_machine

    alive()
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=29)):
        heartbeats.record_worker_alive(force=True)
        assert client.get("/healthz").json()["checks"]["beat"]["ok"] is True
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=31)):
        heartbeats.record_worker_alive(force=True)
        response = client.get("/healthz")
    assert response.status_code == 503
    beat = response.json()["checks"]["beat"]
    assert beat["ok"] is False
    assert beat["stale_after_seconds"] == 1800
    assert beat["age_seconds"] >= 31 * 60


def test_a_failed_email_in_the_last_day_answers_503_with_the_count(client, site_a):
    alive()
    failed_row(site_a, claimed_at=timezone.now() - dt.timedelta(days=2))  # older than a day: not counted
    assert client.get("/healthz").status_code == 200
    failed_row(site_a, claimed_at=timezone.now() - dt.timedelta(hours=3))
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["notifications_failed"] == {"ok": False, "count": 1}


def test_an_unwritable_broker_folder_fails_the_broker_check(client, settings, tmp_path):
    alive()
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path / "missing")}
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {"ok": False, "transport": "filesystem", "error": "not writable"}


def test_unapplied_migrations_fail_the_check(client, monkeypatch):
    from django.db.migrations.executor import MigrationExecutor

    alive()
    monkeypatch.setattr(MigrationExecutor, "migration_plan", lambda self, targets: [("a", False), ("b", False)])
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == {"ok": False, "unapplied": 2}


def test_a_broker_that_does_not_answer_fails_without_naming_its_address(client, settings):
    from tests.integration.support import free_port

    alive()
    port = free_port()
    settings.CELERY_BROKER_URL = f"redis://:s3cret-password@127.0.0.1:{port}/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {"ok": False, "transport": "redis", "error": "ConnectionError"}
    text = response.content.decode()
    assert str(port) not in text and "s3cret" not in text and "127.0.0.1" not in text


@pytest.mark.redis
def test_a_redis_broker_that_answers_passes(client, settings):
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    alive()
    response = client.get("/healthz")
    assert response.json()["checks"]["broker"] == {"ok": True, "transport": "redis"}


def test_healthz_is_cheap(client, django_assert_num_queries, django_assert_max_num_queries):
    alive()
    # First request: SELECT 1, the migrations table (looked up, then read), the failed e-mails.
    with django_assert_max_num_queries(4):
        assert client.get("/healthz").status_code == 200
    # Once the migrations are known to be applied, the process does not look again.
    with django_assert_num_queries(2):
        assert client.get("/healthz").status_code == 200


def test_the_command_line_check_exits_1_when_beat_is_stale(capsys):
    assert health.main(["beat"]) == 1
    assert "beat: FAILING" in capsys.readouterr().out
    heartbeats.record_beat_tick()
    assert health.main(["beat"]) == 0
    assert health.main(["nonsense"]) == 2


def test_livez_answers_without_looking_at_anything(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/livez")
    assert response.status_code == 200 and response.content == b"ok"


def test_compose_services_have_health_checks():
    import yaml

    from tests.integration.support import ROOT

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    checks = {name: " ".join(service.get("healthcheck", {}).get("test", [])) for name, service in services.items()}
    assert "pg_isready" in checks["postgres"]
    assert "redis-cli ping" in checks["redis"]
    assert "/healthz" in checks["web"]
    # The worker pings the node it runs as, not any worker.
    node = services["worker"]["command"][services["worker"]["command"].index("-n") + 1]
    assert node == "worker@%h" and "-d worker@$$HOSTNAME" in checks["worker"]
    assert checks["beat"].endswith("python -m config.health beat")
