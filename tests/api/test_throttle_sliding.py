"""The per-key rate limit over a sliding window (core/api/throttling.py): at no moment does a key get more than
its rate within the last period, so a burst at the end of one minute and another at the start of the next (the
double burst a fixed window allows at its boundary) is refused; requests come free as the ones they follow
leave the window, and Retry-After says when the next one will be let through."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from rest_framework.settings import api_settings

from registry.api.base import ApiKeyThrottle
from tests.api.conftest import assert_problem, call, client_for

pytestmark = pytest.mark.django_db

RATE = 10


@pytest.fixture
def rate_of_ten(settings, monkeypatch):
    rates = {"api_key": f"{RATE}/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    api_settings.reload()
    monkeypatch.setattr(ApiKeyThrottle, "THROTTLE_RATES", rates)
    yield
    monkeypatch.undo()
    api_settings.reload()


def _at_second(api_clock, second: float) -> None:
    """Move the (running) clock on to `second` seconds past the next minute."""
    now = time.time()
    api_clock.shift(dt.timedelta(seconds=(60 - now % 60) + second))


def _get(world):
    return call(client_for(world.keys["a_rw"]), "GET", "/api/v1/sites/")


def _answered(world, n: int) -> int:
    return sum(_get(world).status_code == 200 for _ in range(n))


def test_no_double_burst_at_a_minute_boundary(world, rate_of_ten, api_clock):
    """The rate is spent in the last second of one minute, and the first seconds of the next give nothing
    more."""
    _at_second(api_clock, 59)
    assert _answered(world, RATE) == RATE
    api_clock.shift(dt.timedelta(seconds=2))  # the next minute
    response = _get(world)
    assert_problem(response, 429)
    assert 55 <= int(response["Retry-After"]) <= 60
    api_clock.shift(dt.timedelta(seconds=30))
    assert _answered(world, 3) == 0


def test_requests_come_free_as_the_ones_before_them_leave_the_window(world, rate_of_ten, api_clock):
    _at_second(api_clock, 0)
    assert _answered(world, 4) == 4  # at 0 s
    api_clock.shift(dt.timedelta(seconds=30))
    assert _answered(world, 8) == 6  # at 30 s: 6 more make the rate
    response = _get(world)
    assert_problem(response, 429)
    assert 25 <= int(response["Retry-After"]) <= 31  # until the four of 0 s leave
    api_clock.shift(dt.timedelta(seconds=32))  # 62 s: the four of 0 s are out, the six of 30 s still in
    assert _answered(world, 6) == 4
    api_clock.shift(dt.timedelta(seconds=30))  # 92 s: the six of 30 s are out as well
    assert _answered(world, 12) == 6


def test_refused_requests_do_not_hold_the_key_back(world, rate_of_ten, api_clock):
    """A refused request is not counted: a client that keeps asking gets through once the window has room."""
    assert _answered(world, RATE) == RATE
    for _ in range(5):
        api_clock.shift(dt.timedelta(seconds=10))
        assert _answered(world, 5) == 0
    api_clock.shift(dt.timedelta(seconds=12))  # 62 s after the first ten
    assert _answered(world, RATE + 5) == RATE


def test_each_key_has_its_own_window(world, rate_of_ten, api_clock):
    assert _answered(world, RATE + 2) == RATE
    other = client_for(world.keys["b_rw"])
    assert call(other, "GET", "/api/v1/sites/").status_code == 200
