"""Sites and their time zones."""

from __future__ import annotations

import pytest

from registry.models import Site
from registry.services import site_create
from tests.helpers import refused

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("zone", ["GMT+8", "China Standard Time", "Asia/Nanjing", "CST", "europe/london"])
def test_site_with_a_time_zone_that_is_not_iana_is_refused(zone):
    with refused("time_zone", "is not an IANA time zone", Site):
        site_create(code="XX", name="Somewhere", country="CN", time_zone=zone)


def test_site_with_an_iana_time_zone_is_saved():
    site = site_create(code="NJDT", name="Nanjing Drum Tower Hospital", country="CN", time_zone="Asia/Shanghai")

    assert site.zone.key == "Asia/Shanghai"


def test_site_country_must_be_a_two_letter_upper_case_code():
    with refused("__all__", "two-letter upper-case ISO code", Site):
        site_create(code="XX", name="Somewhere", country="cn", time_zone="Asia/Shanghai")
