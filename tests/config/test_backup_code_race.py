"""A backup code signs in once, even when the same code arrives several times at the same moment
(registry/two_factor.py, backup_code_spend): threads released together on a barrier, each on its own database
connection, and the same burst as sign-ins against a live server, on PostgreSQL. Exactly one succeeds."""

from __future__ import annotations

import re
import threading
from collections import Counter

import pytest
import requests
from django.core.exceptions import ValidationError
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

from registry import constants as rc
from registry import two_factor
from tests.concurrency import released_together
from tests.config.test_two_factor import PASSWORD, enrol
from tests.factories import make_site, make_user

BURST = 8


@pytest.fixture
def enrolled(transactional_db):
    user = make_user("race.coordinator", make_site("RACE"), role=rc.Role.COORDINATOR, password=PASSWORD)
    _device, codes = enrol(user)
    return user, codes


def test_a_spent_backup_code_is_refused_the_second_time(db):
    user = make_user("spent.coordinator", make_site("SPNT"), role=rc.Role.COORDINATOR, password=PASSWORD)
    _device, codes = enrol(user)
    device = two_factor.sign_in_device(user=user, token=codes[3].upper())
    assert isinstance(device, StaticDevice)
    with pytest.raises(ValidationError) as refused:
        two_factor.sign_in_device(user=user, token=codes[3])
    assert "was used" in refused.value.message_dict["otp_token"][0]
    assert StaticToken.objects.filter(device__user=user).count() == 9
    device.refresh_from_db()
    device.throttle_reset()  # a refused code makes the next try wait a second
    assert two_factor.sign_in_device(user=user, token=codes[4]) == device  # the others still work
    assert two_factor.backup_code_spend(user=user, token=codes[4]) is None


@pytest.mark.postgres
@pytest.mark.slow
def test_the_same_backup_code_at_the_same_moment_signs_in_once(enrolled):
    user, codes = enrolled
    outcomes = released_together(BURST, lambda _i: two_factor.sign_in_device(user=user, token=codes[0]))
    unexpected = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, ValidationError)]
    assert unexpected == []
    accepted = [o for o in outcomes if isinstance(o, StaticDevice)]
    assert len(accepted) == 1, outcomes
    assert StaticToken.objects.filter(device__user=user).count() == 9
    assert not StaticToken.objects.filter(device__user=user, token=codes[0]).exists()


@pytest.mark.postgres
@pytest.mark.slow
def test_the_same_backup_code_spent_at_once_by_many_is_spent_once(enrolled):
    """The spending step alone, with no lock held around it: django-otp's StaticDevice.verify_token, which reads
    the code and then deletes it, lets several of these through; the conditional DELETE lets one."""
    user, codes = enrolled
    outcomes = released_together(BURST, lambda _i: two_factor.backup_code_spend(user=user, token=codes[2]))
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    assert sum(isinstance(o, StaticDevice) for o in outcomes) == 1, outcomes
    assert outcomes.count(None) == BURST - 1
    assert StaticToken.objects.filter(device__user=user).count() == 9


def _sign_in(base_url: str, username: str, token: str, barrier: threading.Barrier) -> int:
    session = requests.Session()
    try:
        page = session.get(f"{base_url}/admin/login/?next=/admin/", timeout=60).text
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        barrier.wait(timeout=30)
        answer = session.post(
            f"{base_url}/admin/login/?next=/admin/",
            data={
                "csrfmiddlewaretoken": csrf,
                "username": username,
                "password": PASSWORD,
                "otp_token": token,
                "next": "/admin/",
            },
            headers={"Referer": f"{base_url}/admin/login/"},
            allow_redirects=False,
            timeout=60,
        )
        return answer.status_code
    finally:
        session.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_the_same_backup_code_in_simultaneous_sign_ins_opens_one_session(enrolled, live_server):
    user, codes = enrolled
    barrier = threading.Barrier(BURST)
    answers = released_together(BURST, lambda _i: _sign_in(live_server.url, user.username, codes[1], barrier))
    assert [a for a in answers if isinstance(a, BaseException)] == []
    assert Counter(answers) == {302: 1, 200: BURST - 1}  # one signed in; the rest see the form again
    assert StaticToken.objects.filter(device__user=user).count() == 9
