"""EMAIL_TIMEOUT in every settings module: a stalled mail server holds a worker for a bounded time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(
    f"config.settings.{path.stem}" for path in (ROOT / "config" / "settings").glob("*.py") if path.stem != "__init__"
)
PROBE = """
import importlib, json, sys
print(json.dumps({name: importlib.import_module(name).EMAIL_TIMEOUT for name in sys.argv[1:]}))
"""


def timeouts(**env: str) -> dict[str, int]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "EMAIL_"))}
    environment.update(
        DJANGO_SECRET_KEY="settings-probe-only", DJANGO_ALLOWED_HOSTS="registry.example", PYTHONPATH=str(ROOT), **env
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *MODULES], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_every_settings_module_bounds_smtp_operations_at_30_seconds_unless_the_environment_says_otherwise():
    assert {"config.settings.base", "config.settings.production", "config.settings.local"} <= set(MODULES)

    assert timeouts() == dict.fromkeys(MODULES, 30)
    assert timeouts(EMAIL_TIMEOUT="7") == dict.fromkeys(MODULES, 7)
    assert timeouts(EMAIL_URL="smtp://mail.example:2525", EMAIL_TIMEOUT="5") == dict.fromkeys(MODULES, 5)
