"""Shared fixtures (the personas of docs/architecture.md, "Tests") and the rule for tests needing real services.

A test marked `postgres` needs PostgreSQL (DATABASE_URL), one marked `redis` needs Redis (REDIS_URL).
Without the service such a test is skipped, unless REQUIRE_SERVICES=1 (as in CI), where it fails and
says which service is missing: a CI run that silently skipped them would prove nothing.
"""

from __future__ import annotations

import datetime as dt
import os

import pytest

SERVICE_MARKERS = ("postgres", "redis")
# Tests record infusions and visits in 2026; freezing "now" after them keeps the suite independent of
# the day it runs (services refuse infusions and consents in the future).
FROZEN_NOW = dt.datetime(2026, 9, 1, 9, 0, tzinfo=dt.UTC)

_service_problems: dict[str, str | None] = {}


def services_required() -> bool:
    return os.environ.get("REQUIRE_SERVICES", "").strip() == "1"


def _postgres_problem() -> str | None:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine and "postgis" not in engine:
        return f"PostgreSQL is missing: the database engine is {engine} (set DATABASE_URL=postgres://...)."
    return None


def _redis_problem() -> str | None:
    from django.conf import settings

    url = getattr(settings, "REDIS_URL", "") or os.environ.get("REDIS_URL", "")
    if not url:
        return "Redis is missing: REDIS_URL is not set."
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            if not client.ping():
                return f"Redis is missing: {url} did not answer PING."
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"Redis is missing: {url} did not answer PING ({exc.__class__.__name__}: {exc})."
    return None


def service_problem(service: str) -> str | None:
    """Why `service` cannot be used in this run (None when it can); each service is checked once."""
    if service not in _service_problems:
        _service_problems[service] = {"postgres": _postgres_problem, "redis": _redis_problem}[service]()
    return _service_problems[service]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    for service in SERVICE_MARKERS:
        if item.get_closest_marker(service) is None:
            continue
        problem = service_problem(service)
        if problem is None:
            continue
        if services_required():
            pytest.fail(f"REQUIRE_SERVICES=1 but {problem}", pytrace=False)
        pytest.skip(problem)


# Personas ----------------------------------------------------------------------------------------------


@pytest.fixture
def frozen_now():
    """Freeze the clock at FROZEN_NOW (2026-09-01 09:00 UTC)."""
    import time_machine

    with time_machine.travel(FROZEN_NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def site_a(db):
    """Site A, in Nanjing (Asia/Shanghai, UTC+8, no DST)."""
    from tests.factories import make_site

    return make_site("NJDT", name="Nanjing Drum Tower Hospital", country="CN", time_zone="Asia/Shanghai")


@pytest.fixture
def site_b(db):
    """Site B, in London (Europe/London, with DST)."""
    from tests.factories import make_site

    return make_site("LDN", name="London Partner Hospital", country="GB", time_zone="Europe/London")


@pytest.fixture
def study(site_a, site_b):
    """A study at both sites with the default follow-up template."""
    from registry import constants as rc
    from tests.factories import make_study

    return make_study(
        site_a,
        site_b,
        code="MSCT-SLE",
        registration_id="NCT01741857",
        title="Allogeneic MSC transplantation in refractory SLE",
        phase=rc.StudyPhase.PHASE_1_2,
        target_enrolment=40,
    )


def _member(django_user_model, username: str, site, role: str):
    from tests.factories import make_user

    return make_user(username, site, role=role, staff=False)


@pytest.fixture
def coordinator_a(django_user_model, site_a):
    from registry.constants import Role

    return _member(django_user_model, "coord_a", site_a, Role.COORDINATOR)


@pytest.fixture
def second_user_a(django_user_model, site_a):
    from registry.constants import Role

    return _member(django_user_model, "investigator_a", site_a, Role.INVESTIGATOR)


@pytest.fixture
def monitor_a(django_user_model, site_a):
    from registry.constants import Role

    return _member(django_user_model, "monitor_a", site_a, Role.MONITOR)


@pytest.fixture
def coordinator_b(django_user_model, site_b):
    from registry.constants import Role

    return _member(django_user_model, "coord_b", site_b, Role.COORDINATOR)


@pytest.fixture
def superuser(django_user_model):
    from tests.factories import make_superuser

    return make_superuser("admin")


@pytest.fixture(autouse=True)
def _language_reset():
    """Each test starts in the default language: a request in Chinese activates Chinese in this thread, and a
    server's next request would activate its own, but the next test would not."""
    from django.utils import translation

    yield
    translation.deactivate()
