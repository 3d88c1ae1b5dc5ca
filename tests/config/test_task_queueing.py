"""A web process queues export and import tasks by name: it never imports the tasks modules (only the worker
autodiscovers them), so a lookup in its own task registry would find nothing, and the job would wait for beat's
resume sweep. Run in a fresh process with the embedded defaults (the filesystem broker under a temporary folder),
as `make run`'s web server is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

QUEUE_BOTH = (
    "from reporting.exports.jobs import _queue as export; from intake.services.jobs import _queue as import_; "
    "export(41); import_(42)"
)


def test_a_web_process_queues_export_and_import_tasks_by_name(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "REDIS_", "CELERY"))}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.local", REGISTRY_VAR_DIR=str(tmp_path), PYTHONPATH=str(ROOT))

    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", QUEUE_BOTH],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "could not be queued" not in done.stderr, done.stderr
    messages = [json.loads(path.read_text()) for path in sorted((tmp_path / "celery" / "queue").iterdir())]
    sent = sorted((m["headers"]["task"], m["headers"]["argsrepr"]) for m in messages)
    assert sent == [("intake.tasks.run_import", "[42]"), ("reporting.tasks.build_export", "[41]")]
