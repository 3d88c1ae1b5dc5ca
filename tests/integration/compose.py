"""docker-compose.yml's own commands and environment, run as processes on this machine (no Docker).

The commands come from the compose file, so a test that runs them fails when the file changes in a way the
processes do not survive. Only what points at other containers is replaced: PostgreSQL (the test database),
Redis (a private redis-server), the mail server (an SMTP catcher on loopback), the bind address, and `python`,
`gunicorn`, `celery` run by this test's Python.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from tests.integration.support import PYTHON, ROOT, database_url, wait_until

COMPOSE = ROOT / "docker-compose.yml"
VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_]+)(?::(?P<op>[-?])(?P<arg>[^}]*))?\}")


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def command(service: str, *, port: int | None = None) -> list[str]:
    """The compose command of `service`, run by this Python; gunicorn's `--bind` moved to 127.0.0.1:`port`."""
    argv = list(services()[service]["command"])
    program = argv[0]
    if program == "python":
        argv = [PYTHON, *argv[1:]]
    elif program in ("gunicorn", "celery"):
        argv = [PYTHON, "-m", program, *argv[1:]]
    else:
        raise AssertionError(f"{service}: unexpected program {program!r} in docker-compose.yml")
    if "--bind" in argv:
        assert port is not None, f"{service} binds an address: give a port"
        argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"
    return argv


def _interpolate(value: str, given: dict[str, str]) -> str:
    def one(match):
        name, op, arg = match.group("name", "op", "arg")
        if name in given:
            return given[name]
        if op == "-":
            return arg
        raise AssertionError(f"docker-compose.yml needs {name} ({arg}); the test must give it")

    return VARIABLE.sub(one, str(value))


def environment(*, redis_url: str, smtp_port: int, var_dir: Path, **extra: str) -> dict[str, str]:
    """The compose services' environment with this machine's addresses, plus what a process needs here."""
    declared = services()["web"]["environment"]
    given = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "POSTGRES_PASSWORD": ""}
    compose_env = {key: _interpolate(value, given) for key, value in declared.items()}
    # Every address points at another container: each is replaced, keeping the rest (conn_max_age, ...).
    database = urlsplit(compose_env["DATABASE_URL"])
    assert database.hostname == "postgres", compose_env["DATABASE_URL"]
    compose_env["DATABASE_URL"] = urlunsplit(urlsplit(database_url())._replace(query=database.query))
    assert urlsplit(compose_env["REDIS_URL"]).hostname == "redis", compose_env["REDIS_URL"]
    compose_env["REDIS_URL"] = redis_url
    assert urlsplit(compose_env["EMAIL_URL"]).hostname == "mail", compose_env["EMAIL_URL"]
    compose_env["EMAIL_URL"] = f"smtp://127.0.0.1:{smtp_port}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST", "DJANGO_", "CELERY", "EMAIL_", "REDIS_", "DATABASE_", "LOG_"))
    }
    env.update(compose_env)
    env.update(REGISTRY_VAR_DIR=str(var_dir), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Process:
    """One process started from a compose command, its output in `<name>.log`."""

    name: str
    argv: list[str]
    env: dict
    logdir: Path
    process: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.logdir / f"{self.name}.log"

    def start(self) -> Process:
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{self.text()[-3000:]}")
        return True

    def wait_for(self, text: str, timeout: float = 60) -> None:
        wait_until(lambda: self.alive() and text in self.text(), timeout=timeout, what=f"{self.name}: {text!r}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (gunicorn's and Celery's graceful stop) to the process; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not stop within {timeout} s of SIGTERM:\n{self.text()[-3000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
