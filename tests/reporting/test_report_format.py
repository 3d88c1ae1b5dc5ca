"""The cohort report prints p-values as "< 0.001" or three significant digits, and the time it was generated
in the reader's time zone."""

from __future__ import annotations

import re
import zoneinfo

import pytest
from django.utils import timezone

from registry import constants as rc
from registry.services import membership_grant
from reporting.templatetags.report_format import local_time, p_statement, pvalue
from tests.factories import make_site, make_user
from tests.reporting.hand_cohort import admin_url, page_text


@pytest.mark.parametrize(
    "value, printed",
    [
        (None, "—"),
        (float("nan"), "—"),
        (0.0, "< 0.001"),
        (0.000123, "< 0.001"),
        (0.000999, "< 0.001"),
        (0.001, "0.00100"),
        (0.0421, "0.0421"),
        (0.05, "0.0500"),
        (0.317, "0.317"),
        (0.25, "0.250"),
        (1.0, "1.00"),
    ],
)
def test_p_values_print_below_a_thousandth_or_to_three_significant_digits(value, printed):
    assert pvalue(value) == printed


def test_p_values_in_a_sentence():
    assert p_statement(0.0002) == "p < 0.001"
    assert p_statement(0.317) == "p = 0.317"
    assert p_statement(None) == "p = —"


def test_report_times_are_in_the_active_time_zone():
    generated = "2026-09-01T09:00:00+00:00"
    with timezone.override("Asia/Shanghai"):
        assert local_time(generated) == "2026-09-01 17:00 CST"
    with timezone.override("Europe/London"):
        assert local_time(generated) == "2026-09-01 10:00 BST"
    with timezone.override("UTC"):
        assert local_time(generated) == "2026-09-01 09:00 UTC"


@pytest.mark.django_db
def test_report_page_prints_p_values_and_the_generation_time_for_the_reader(client, cohort):
    client.force_login(make_user("report_format", cohort.site_a))
    html = client.get(admin_url(cohort.study)).content.decode()
    text = page_text(html)
    assert "Overall survival, log-rank test: p = 0.317." in text
    zone = cohort.site_a.time_zone
    stamp = re.search(r"generated (\d{4}-\d{2}-\d{2} \d{2}:\d{2}) (\S+)\.", text)
    assert stamp, text[:2000]
    assert stamp.group(2) == timezone.now().astimezone(zoneinfo.ZoneInfo(zone)).tzname()
    assert "T" not in stamp.group(1) and "+00:00" not in text
    # A p-value column of the time-point table holds only printed p-values.
    table = html[html.index('id="time-points"') : html.index("</table>", html.index('id="time-points"'))]
    for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)[1:]:
        cells = re.findall(r"<td>(.*?)</td>", row)
        for p in cells[-2:]:
            assert p in ("", "—", "< 0.001") or re.fullmatch(r"\d\.\d+", p), p


@pytest.mark.django_db
def test_a_user_of_sites_in_two_zones_reads_utc(client, cohort):
    user = make_user("report_two_zones", cohort.site_a)
    other = make_site("RFZ", time_zone="Pacific/Auckland", country="NZ")
    membership_grant(user=user, site=other, role=rc.Role.COORDINATOR)
    client.force_login(user)
    text = page_text(client.get(admin_url(cohort.study)).content.decode())
    assert re.search(r"generated \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC\.", text)
