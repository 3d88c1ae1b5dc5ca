"""Fixtures of the import tests: the cohort's lot, and the import jobs handed to the broker."""

from __future__ import annotations

import pytest

from intake.services import jobs
from tests.factories import make_lot
from tests.intake.cohort import LOT


@pytest.fixture
def lot(study, site_a):
    return make_lot(study, site_a, lot_number=LOT)


@pytest.fixture
def queued(monkeypatch):
    """The job ids handed to the broker (nothing is sent): a test runs a job itself, as a worker would."""
    sent: list[int] = []
    monkeypatch.setattr(jobs, "_queue", sent.append)
    return sent
