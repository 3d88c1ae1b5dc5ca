"""Structured logs: with LOG_FORMAT=json, one JSON object per line with the request id, site, API key prefix
(never the key) and task id."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from celery import shared_task

from config.logs import JsonFormatter
from registry.api_keys import api_key_issue

pytestmark = pytest.mark.django_db


@pytest.fixture
def json_lines():
    """Every record logged while the test runs, formatted as the JSON handler formats it."""
    lines: list[dict] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(json.loads(JsonFormatter().format(record)))

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lines
    finally:
        root.removeHandler(handler)


def test_a_partner_request_logs_its_id_site_and_key_prefix_never_the_key(site_a, json_lines):
    from tests.api.conftest import client_for

    key, raw = api_key_issue(site=site_a, name="Lab system")
    response = client_for(raw).get("/api/v1/patients/999999/", HTTP_X_REQUEST_ID="req-123")
    assert response.status_code == 404
    assert response["X-Request-ID"] == "req-123"
    lines = [line for line in json_lines if line["logger"] == "django.request"]
    assert lines, json_lines
    line = lines[-1]
    assert line["request_id"] == "req-123"
    assert line["api_key_prefix"] == key.prefix
    assert line["site_id"] == site_a.pk
    assert line["level"] == "WARNING" and "Not Found" in line["message"]
    assert all(raw not in json.dumps(entry) for entry in json_lines)


def test_a_request_without_a_usable_id_gets_one(client, json_lines):
    response = client.get("/nowhere", HTTP_X_REQUEST_ID="not a token; <script>")
    request_id = response["X-Request-ID"]
    assert len(request_id) == 32 and request_id.isalnum()
    assert any(line.get("request_id") == request_id for line in json_lines)


@shared_task(bind=True)
def _logging_task(self):
    logging.getLogger("registry.test").info("inside the task")
    return self.request.id


def test_a_task_logs_its_id(json_lines):
    task_id = _logging_task.apply(task_id="task-abc").get()
    assert task_id == "task-abc"
    line = next(line for line in json_lines if line["message"] == "inside the task")
    assert line["task_id"] == "task-abc"
    assert "request_id" not in line


@pytest.mark.slow
def test_log_format_json_makes_every_line_json(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_", "REDIS_"))}
    env.update(LOG_FORMAT="json", DJANGO_SETTINGS_MODULE="config.settings.local", REGISTRY_VAR_DIR=str(tmp_path))
    code = "import logging; logging.getLogger('registry.probe').warning('hello %s', 'there')"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert result.returncode == 0, result.stderr
    line = next(json.loads(text) for text in result.stderr.splitlines() if "registry.probe" in text)
    assert line["message"] == "hello there"
    assert line["level"] == "WARNING"
    assert line["time"].endswith("+00:00")
