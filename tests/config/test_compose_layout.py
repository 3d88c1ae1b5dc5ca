"""docker-compose.yml holds what docs/operations.md says of it: the connection budget's figures, the backup service,
the export files shared by the services that write, serve and archive them."""

from __future__ import annotations

import re

from tests.integration.support import ROOT


def _compose() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def _option(command: list[str], name: str) -> str:
    for n, part in enumerate(command):
        if part == name:
            return command[n + 1]
        if part.startswith(f"{name}="):
            return part.split("=", 1)[1]
    raise AssertionError(f"{name} missing from {command}")


def test_connection_budget_matches_the_documented_arithmetic():
    services = _compose()
    web = int(_option(services["web"]["command"], "--workers"))
    worker = int(_option(services["worker"]["command"], "--concurrency"))
    assert (web, worker) == (3, 2)
    docs = (ROOT / "docs" / "operations.md").read_text()
    assert f"10 x {web} + 10 x {worker} + 5 = {10 * web + 10 * worker + 5}" in docs
    assert 10 * web + 10 * worker + 5 < 97
    assert f"{20 * web + 20 * worker + 5}: raise `max_connections`" in docs.replace("\n", " ")
    assert "conn_max_age=60" in services["web"]["environment"]["DATABASE_URL"]


def test_backup_service_archives_the_database_and_the_shared_exports():
    services = _compose()
    backup = services["backup"]
    assert backup["command"] == ["python", "manage.py", "backup", "--output-dir", "/backups"]
    assert backup["profiles"] == ["backup"], "`docker compose up` must not start it"
    for name in ("web", "worker", "backup"):
        assert "exports:/app/var/exports" in services[name]["volumes"], name
    assert "./backups:/backups" in backup["volumes"]


def test_the_compose_file_no_longer_says_exactly_one_beat():
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"exactly one (celery )?beat", text, re.IGNORECASE)
    assert "test_two_beats.py" in text
