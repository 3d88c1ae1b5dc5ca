"""The hand-computed cohort of `hand_cohort.py`, as a fixture."""

import pytest

from tests.reporting.hand_cohort import Cohort, build_cohort


@pytest.fixture
def cohort(frozen_now) -> Cohort:
    return build_cohort()
