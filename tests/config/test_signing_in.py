"""Signing in to the admin: the login form, lockout after wrong passwords (by username and by address),
two-factor tokens and the session's lifetime."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.conf import settings as django_settings

from registry import constants as rc
from tests.factories import (
    make_site,
    make_user,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 9, 1, 9, 0, tzinfo=dt.UTC)
PASSWORD = "Correct-horse-battery-42"


# Signing in --------------------------------------------------------------------------------------------


@pytest.fixture
def person(db):
    site = make_site("SIGN")
    return make_user("sign.coordinator", site, role=rc.Role.COORDINATOR, password=PASSWORD)


def login(client, username: str, password: str, **extra):
    return client.post(
        "/admin/login/?next=/admin/", {"username": username, "password": password, "next": "/admin/", **extra}
    )


def signed_in(client) -> bool:
    response = client.get("/admin/")
    return response.status_code == 200 and 'id="worklist"' in response.content.decode()


def is_lockout(response) -> bool:
    return response.status_code == 429 or "locked" in response.content.decode().lower()


def test_login_through_the_form_lands_on_the_worklist(client, person):
    response = login(client, person.username, PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert signed_in(client)


def test_five_wrong_passwords_lock_the_account_until_reset(client, person):
    from axes.utils import reset

    assert django_settings.AXES_FAILURE_LIMIT == 5
    for attempt in range(1, 6):
        response = login(client, person.username, "wrong-password-123")
        assert response.status_code in (200, 429), attempt
        if attempt < 5:
            assert response.status_code == 200 and not is_lockout(response), f"locked after {attempt} failures"
    response = login(client, person.username, PASSWORD)
    assert is_lockout(response), f"correct password accepted after 5 failures: {response.status_code}"
    assert not signed_in(client)

    reset(username=person.username)
    reset(ip="127.0.0.1")
    response = login(client, person.username, PASSWORD)
    assert response.status_code == 302, response.status_code
    assert signed_in(client)


def test_lockout_applies_to_the_username_from_another_address_and_to_the_address(client, person):
    from axes.utils import reset

    for _ in range(5):
        login(client, person.username, "wrong-password-123")
    # The same account from another address is refused.
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": person.username, "password": PASSWORD, "next": "/admin/"},
        REMOTE_ADDR="10.20.30.40",
    )
    assert is_lockout(response)
    # Another account from the locked address is refused too.
    other = make_user("sign.other", person.memberships.first().site, role=rc.Role.COORDINATOR, password=PASSWORD)
    assert is_lockout(login(client, other.username, PASSWORD))
    reset()
    assert login(client, other.username, PASSWORD).status_code == 302


@pytest.fixture
def two_factor(settings):
    settings.REGISTRY_REQUIRE_2FA = True


def test_with_two_factor_the_login_page_asks_for_a_token(client, two_factor):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 200
    assert 'name="otp_token"' in response.content.decode()


def test_with_two_factor_a_user_without_a_device_cannot_reach_the_admin(client, two_factor, person):
    response = login(client, person.username, PASSWORD)
    assert response.status_code == 200  # the form again, asking for a token
    assert 'name="otp_token"' in response.content.decode()
    assert not signed_in(client)
    # Even a session opened without the second factor does not open the admin.
    client.force_login(person)
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert client.get("/admin/patients/patient/").status_code == 302


def test_with_two_factor_a_confirmed_device_and_a_valid_token_open_the_admin(client, two_factor, person):
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.create(user=person, name="phone", confirmed=True)
    token = totp(device.bin_key, device.step, device.t0, device.digits, device.drift)
    wrong = (token + 1) % 10**device.digits
    # The device is chosen from the list the form shows once the password is right.
    response = login(client, person.username, PASSWORD)
    assert device.persistent_id in response.content.decode()
    response = login(
        client, person.username, PASSWORD, otp_device=device.persistent_id, otp_token=f"{wrong:0{device.digits}d}"
    )
    assert response.status_code == 200 and not signed_in(client)
    device.refresh_from_db()
    device.throttle_reset()  # the failed token delays the next try; a person would wait

    response = login(
        client, person.username, PASSWORD, otp_device=device.persistent_id, otp_token=f"{token:0{device.digits}d}"
    )
    assert response.status_code == 302 and response["Location"] == "/admin/", response.content.decode()[:3000]
    assert signed_in(client)


def test_with_two_factor_an_unconfirmed_device_does_not_count(client, two_factor, person):
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.create(user=person, name="phone", confirmed=False)
    token = totp(device.bin_key, device.step, device.t0, device.digits, device.drift)
    response = login(
        client, person.username, PASSWORD, otp_device=device.persistent_id, otp_token=f"{token:0{device.digits}d}"
    )
    # django-otp's form takes the token, but a session verified by an unconfirmed device is not verified.
    assert response.status_code in (200, 302)
    assert not signed_in(client)


def test_sessions_end_with_the_browser_and_after_a_finite_age(client, person):
    assert django_settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True
    age = django_settings.SESSION_COOKIE_AGE
    assert 0 < age <= 24 * 3600
    with time_machine.travel(NOW, tick=False) as traveller:
        response = login(client, person.username, PASSWORD)
        assert response.status_code == 302
        cookie = response.cookies[django_settings.SESSION_COOKIE_NAME]
        assert cookie["expires"] == "" and cookie["max-age"] == "", "the session cookie must not outlive the browser"
        assert client.session.get_expire_at_browser_close()
        assert client.session.get_expiry_age() == age
        traveller.shift(dt.timedelta(seconds=age - 60))
        assert signed_in(client)
        traveller.shift(dt.timedelta(seconds=120))
        response = client.get("/admin/")
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
