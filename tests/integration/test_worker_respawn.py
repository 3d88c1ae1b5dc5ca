"""`make run` starts the worker through `config.respawn` (Procfile.local): a worker that exits is started again.

The test runs Procfile.local's own worker line (so the two cannot drift), with the embedded defaults (SQLite
and the filesystem broker under a temporary folder), SIGKILLs the worker and waits for a new one.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.support import ROOT, wait_until

pytestmark = pytest.mark.slow

STARTED = re.compile(r"respawn: started \S+ as pid (\d+)")


def procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile.local").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in Procfile.local")


def pids(log: Path) -> list[int]:
    return [int(pid) for pid in STARTED.findall(log.read_text(errors="replace"))] if log.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child not yet reaped by the wrapper is a zombie: not alive.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split(") ", 1)[1][0] != "Z"


def test_the_procfile_worker_is_started_again_after_it_is_killed(tmp_path):
    venv_bin = str(Path(sys.executable).parent) + "/"
    command = procfile_command("worker").replace(".venv/bin/", venv_bin)
    assert "config.respawn" in command
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST", "DJANGO_", "CELERY", "EMAIL_", "REDIS_", "DATABASE_"))
    }
    env.update(REGISTRY_VAR_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    log = tmp_path / "worker.log"
    with log.open("ab") as handle:
        wrapper = subprocess.Popen(
            ["sh", "-c", command], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until(lambda: log.read_text(errors="replace").count(" ready.") >= 1, what="the first worker")
        first = pids(log)[0]
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: len(pids(log)) >= 2, what="the wrapper to start a new worker")
        second = pids(log)[1]
        assert second != first
        wait_until(lambda: log.read_text(errors="replace").count(" ready.") >= 2, what="the new worker to be ready")
        assert alive(second) and not alive(first)
        assert wrapper.poll() is None

        os.killpg(wrapper.pid, signal.SIGTERM)  # what honcho does on Ctrl-C: the wrapper stops, not respawns
        wrapper.wait(timeout=30)
        assert len(pids(log)) == 2, log.read_text(errors="replace")[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(wrapper.pid, signal.SIGKILL)
        wrapper.wait(timeout=10)
