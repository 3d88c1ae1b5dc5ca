"""Signing in to the admin: the login form, lockout after wrong passwords (by username and address together),
the warning before it, the lockout page, and the session's lifetime (two-factor sign-in: test_two_factor.py)."""

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
    return response.status_code == 429 and 'id="lockout"' in response.content.decode()


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


def test_lockout_is_by_username_and_address_together(client, person):
    """Five failures lock that name at that address only: the colleague behind the same hospital NAT still
    signs in, and so does the same account from another address."""
    from axes.utils import reset

    for _ in range(5):
        login(client, "made-up-name", "wrong-password-123")
    assert is_lockout(login(client, "made-up-name", "wrong-password-123"))
    # Another account from the same address signs in.
    response = login(client, person.username, PASSWORD)
    assert response.status_code == 302, response.status_code
    client.logout()
    # The locked name itself is refused from this address, but not from another one.
    for _ in range(5):
        login(client, person.username, "wrong-password-123")
    assert is_lockout(login(client, person.username, PASSWORD))
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": person.username, "password": PASSWORD, "next": "/admin/"},
        REMOTE_ADDR="10.20.30.40",
    )
    assert response.status_code == 302, response.status_code
    reset()


def test_a_warning_names_the_attempts_left_from_the_third_failure(client, person):
    for attempt in (1, 2):
        response = login(client, person.username, "wrong-password-123")
        assert "attempts-left" not in response.content.decode(), attempt
    response = login(client, person.username, "wrong-password-123")
    page = response.content.decode()
    assert response.status_code == 200 and 'id="attempts-left"' in page
    assert "2 attempts left before sign-in is locked for 30 minutes" in page
    page = login(client, person.username, "wrong-password-123").content.decode()
    assert "1 attempt left before sign-in is locked for 30 minutes" in page
    # A good password clears the count.
    assert login(client, person.username, PASSWORD).status_code == 302


def test_the_lockout_page_says_how_long_and_whom_to_contact(client, person, settings):
    settings.REGISTRY_SUPPORT_CONTACT = "the registry office, extension 4312"
    for _ in range(5):
        response = login(client, person.username, "wrong-password-123")
    page = response.content.decode()
    assert response.status_code == 429
    assert 'id="lockout"' in page and "30 minutes" in page and "the registry office, extension 4312" in page
    assert "admin/css/base.css" in page  # the admin's look
    assert person.username in page


def test_without_a_contact_setting_the_lockout_page_names_a_default(client, person, settings):
    settings.REGISTRY_SUPPORT_CONTACT = ""
    for _ in range(5):
        response = login(client, person.username, "wrong-password-123")
    assert "data manager or the registry&#x27;s administrator" in response.content.decode()


def test_the_lockout_page_in_chinese(client, person):
    client.cookies[django_settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    for _ in range(5):
        response = login(client, person.username, "wrong-password-123")
    page = response.content.decode()
    assert response.status_code == 429
    assert "30 分钟" in page and "登录已锁定" in page
    assert "locked" not in page.lower().replace(person.username, "")


def test_the_warning_in_chinese(client, person):
    client.cookies[django_settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    for _ in range(3):
        response = login(client, person.username, "wrong-password-123")
    assert "还可尝试 2 次" in response.content.decode()


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
