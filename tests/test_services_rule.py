"""The rule for tests needing real services: skipped without them, failed under REQUIRE_SERVICES=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_TEST = "tests/core/test_audit.py::test_every_history_table_has_the_append_only_trigger"
REDIS_TEST = "tests/test_services_rule.py::test_redis_answers_ping"

pytestmark = pytest.mark.slow


@pytest.mark.redis
def test_redis_answers_ping(settings):
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
    try:
        assert client.ping() is True
    finally:
        client.close()


def run_pytest(node_id: str, **env_changes: str | None) -> subprocess.CompletedProcess:
    env = {
        key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL", "REQUIRE_SERVICES"}
    }
    env.update({key: value for key, value in env_changes.items() if value is not None})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", node_id],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_postgres_test_is_skipped_on_sqlite():
    result = run_pytest(POSTGRES_TEST)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "PostgreSQL is missing" in result.stdout


def test_postgres_test_fails_on_sqlite_when_services_are_required():
    result = run_pytest(POSTGRES_TEST, REQUIRE_SERVICES="1")

    assert result.returncode != 0
    assert "REQUIRE_SERVICES=1 but PostgreSQL is missing" in result.stdout
    assert "skipped" not in result.stdout


def test_redis_test_fails_without_redis_url_when_services_are_required():
    result = run_pytest(REDIS_TEST, REQUIRE_SERVICES="1")

    assert result.returncode != 0
    assert "Redis is missing: REDIS_URL is not set" in result.stdout


def test_redis_test_fails_when_redis_does_not_answer_and_services_are_required():
    # Port 1 (tcpmux) has no Redis behind it.
    result = run_pytest(REDIS_TEST, REQUIRE_SERVICES="1", REDIS_URL="redis://127.0.0.1:1/0")

    assert result.returncode != 0
    assert "did not answer PING" in result.stdout


def test_redis_test_is_skipped_when_redis_does_not_answer():
    result = run_pytest(REDIS_TEST, REDIS_URL="redis://127.0.0.1:1/0")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
