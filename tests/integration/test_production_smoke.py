"""The production layout, exercised without Docker: docker-compose.yml's own commands as processes.

`migrate`, gunicorn with the production settings, a Celery worker and one beat run against PostgreSQL (the test
database), a private Redis and an SMTP catcher, with the compose file's environment (tests/integration/compose.py).
A partner's POST through gunicorn answers 201, a reminder due today arrives by SMTP, `/healthz` says every check
passes, and every process stops on SIGTERM with exit code 0.

Beat runs the production settings with the reminder sweep every 2 seconds instead of every 15 minutes
(tests/integration/fast_beat_settings.py): the only change, so that the test sees beat queue the sweep.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from registry.api_keys import api_key_issue
from registry.models import ApiKeyScope
from tests.integration import compose
from tests.integration.support import build_clinic, free_port, private_redis, report, smtp_server, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _json(raw: bytes) -> dict:
    try:
        return json.loads(raw)
    except ValueError:
        return {"body": raw.decode(errors="replace")}


def _request(url: str, *, data: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _json(error.read())
    except OSError:  # not listening yet, or a worker still loading (URLError and timeouts are OSErrors)
        return 0, {}


def test_compose_commands_serve_a_partner_send_a_reminder_and_stop_cleanly(tmp_path):
    started = time.monotonic()
    clinic = build_clinic(day_zero_offsets=[4], coordinators=[False])
    expected = clinic.expected_keys()
    assert len(expected) == 2  # BL overdue-1 and D7 upcoming, one e-mail each
    _, raw_key = api_key_issue(site=clinic.site, name="Smoke EHR", scope=ApiKeyScope.READ_WRITE)

    with private_redis(tmp_path) as redis, smtp_server() as (mailbox, smtp_port):
        env = compose.environment(redis_url=redis.url, smtp_port=smtp_port, var_dir=tmp_path)
        assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
        migrate = compose.Process("migrate", compose.command("migrate"), env, tmp_path).start()
        assert migrate.process.wait(timeout=300) == 0, migrate.text()[-3000:]

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        beat_env = {**env, "DJANGO_SETTINGS_MODULE": "tests.integration.fast_beat_settings"}
        processes = [
            compose.Process("web", compose.command("web", port=port), env, tmp_path),
            compose.Process("worker", compose.command("worker"), env, tmp_path),
            compose.Process("beat", compose.command("beat"), beat_env, tmp_path),
        ]
        try:
            for process in processes:
                process.start()
            web, worker, beat = processes
            wait_until(lambda: web.alive() and _request(f"{base}/livez")[0] == 200, what="gunicorn to answer")

            status, body = _request(
                f"{base}/api/v1/patients/",
                data={
                    "study": clinic.study.code,
                    "subject_code": "SMOKE-001",
                    "sex": "F",
                    "birth_year": 1990,
                    "diagnosis_date": "2019-06-01",
                    "classification_criteria": "acr1997",
                    "consent_date": "2025-01-15",
                    "refractory_to": ["cyclophosphamide"],
                },
                headers={"Authorization": f"Api-Key {raw_key}"},
            )
            assert status == 201, body
            assert body["subject_code"] == "SMOKE-001"

            wait_until(
                lambda: worker.alive() and beat.alive() and mailbox.received_keys() >= expected,
                timeout=90,
                what="the due reminders to arrive by SMTP",
            )
            health = wait_until(
                lambda: (lambda answer: answer if answer[0] == 200 else None)(_request(f"{base}/healthz")),
                timeout=60,
                what="/healthz to answer 200",
            )
            assert health[1]["status"] == "ok"
            assert all(check["ok"] for check in health[1]["checks"].values()), health[1]
            assert set(health[1]["checks"]) == {
                "database",
                "migrations",
                "broker",
                "beat",
                "workers",
                "notifications_failed",
            }
            assert "Sending due task sweep-reminders" in beat.text()
        finally:
            codes = {process.name: process.stop() for process in processes if process.process is not None}
            for process in processes:
                process.kill()

    counts = mailbox.key_counts()
    report(
        f"[production smoke] emails={mailbox.count()} keys={len(counts)} exit_codes={codes} "
        f"seconds={round(time.monotonic() - started, 1)}"
    )
    assert set(counts) == expected and all(n == 1 for n in counts.values()), counts
    assert codes == {"web": 0, "worker": 0, "beat": 0}, {p.name: p.text()[-2000:] for p in processes}
