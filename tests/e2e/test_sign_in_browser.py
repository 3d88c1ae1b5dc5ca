"""Signing in, in a real browser: the lockout holds one name at one address (a colleague behind the same address
still signs in), the warning before it, the lockout page in English and Chinese; two-factor enrolment read from
the page (the key under the QR code), then sign-in with the app's code, with a backup code, and that backup code
refused the second time. Screenshots go to test-artifacts/ (and /tmp/signin-*.png)."""

from __future__ import annotations

import base64
import shutil

import pytest
from django_otp.oath import TOTP

from registry import constants as rc
from tests.factories import make_site, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "Browser-sign-in-2026"


def shot(page, artifacts, name: str) -> None:
    path = artifacts / f"signin-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    shutil.copy(path, f"/tmp/signin-{name}.png")


def submit_login(page, base: str, username: str, password: str, code: str | None = None):
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    if code is not None:
        page.fill("#id_otp_token", code)
    with page.expect_navigation() as navigation:
        page.click("#login-form input[type=submit]")
    return navigation.value


def new_page(chromium, locale: str = "en-GB"):
    context = chromium.new_context(viewport={"width": 1200, "height": 900}, locale=locale)
    context.set_default_timeout(20_000)
    return context, context.new_page()


def test_lockout_holds_one_name_at_one_address(chromium, live, artifacts):
    site = make_site("BRSI")
    person = make_user("browser.locked", site, role=rc.Role.COORDINATOR, password=PASSWORD)
    colleague = make_user("browser.colleague", site, role=rc.Role.COORDINATOR, password=PASSWORD)

    context, page = new_page(chromium)
    for attempt in (1, 2):
        submit_login(page, live, person.username, "not-the-password")
        assert page.locator("#attempts-left").count() == 0, attempt
    submit_login(page, live, person.username, "not-the-password")
    warning = page.locator("#attempts-left").inner_text()
    assert "2 attempts left before sign-in is locked for 30 minutes" in warning
    shot(page, artifacts, "warning-en")
    submit_login(page, live, person.username, "not-the-password")
    response = submit_login(page, live, person.username, "not-the-password")
    assert response.status == 429
    text = page.locator("#lockout").inner_text()
    assert "30 minutes" in text and person.username in text and "data manager" in text
    shot(page, artifacts, "lockout-en")
    # The right password does not open it now.
    assert submit_login(page, live, person.username, PASSWORD).status == 429
    context.close()

    # A colleague at the same address (the live server sees every browser as 127.0.0.1) signs in.
    context, page = new_page(chromium)
    submit_login(page, live, colleague.username, PASSWORD)
    assert page.url == f"{live}/admin/"
    context.close()

    # In Chinese: a made-up name is locked out, in Chinese, and locks nobody else.
    context, page = new_page(chromium, locale="zh-CN")
    for _ in range(3):
        submit_login(page, live, "no-such-person", "guess-123456")
    assert "还可尝试 2 次" in page.locator("#attempts-left").inner_text()
    shot(page, artifacts, "warning-zh")
    for _ in range(2):
        response = submit_login(page, live, "no-such-person", "guess-123456")
    assert response.status == 429
    text = page.locator("#lockout").inner_text()
    assert "登录已锁定" in text and "30 分钟" in text and "Try again" not in text
    shot(page, artifacts, "lockout-zh")
    submit_login(page, live, colleague.username, PASSWORD)
    assert page.url == f"{live}/admin/"
    context.close()


def code_for(key_text: str, steps_ahead: int = 0) -> str:
    """The authenticator's code for the key shown on the page (as an app would compute it)."""
    key = key_text.replace(" ", "")
    key += "=" * (-len(key) % 8)
    totp = TOTP(base64.b32decode(key), step=30, t0=0, digits=6, drift=steps_ahead)
    return f"{totp.token():06d}"


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_two_factor_enrolment_then_sign_in_with_the_app_and_a_backup_code(
    chromium, live, artifacts, settings, language
):
    settings.REGISTRY_REQUIRE_2FA = True
    site = make_site("BRTF")
    investigator = make_user(f"browser.inv.{language}", site, role=rc.Role.INVESTIGATOR, password=PASSWORD)
    context, page = new_page(chromium, locale="zh-CN" if language == "zh-hans" else "en-GB")

    # Required, not yet enrolled: after the password, the enrolment page.
    submit_login(page, live, investigator.username, PASSWORD)
    page.goto(f"{live}/admin/")
    assert page.url == f"{live}/admin/two-factor/", page.url
    assert page.locator("#totp-qr svg").count() == 1
    key_text = page.locator("#totp-key").inner_text()
    shot(page, artifacts, f"enrol-{language}")

    page.fill("#id_token", "000000")
    with page.expect_navigation():
        page.click("#confirm-form input[type=submit]")
    assert page.locator("#two-factor-error").count() == 1
    page.wait_for_timeout(1500)  # django-otp makes the next try wait a second after a wrong code
    page.fill("#id_token", code_for(key_text))
    with page.expect_navigation():
        page.click("#confirm-form input[type=submit]")
    codes = page.locator("#backup-codes code").all_inner_texts()
    assert len(codes) == 10
    shot(page, artifacts, f"backup-codes-{language}")
    page.click("#two-factor-continue")
    page.wait_for_url(f"{live}/admin/")
    assert page.locator("#worklist").count() == 1
    assert page.locator("#two-factor-link").count() == 1
    context.close()

    # Sign in again with the app's code (the next time step: the one used to confirm is spent).
    context, page = new_page(chromium)
    submit_login(page, live, investigator.username, PASSWORD, code_for(key_text, 1))
    assert page.url == f"{live}/admin/", page.url
    context.close()

    # With a backup code, once.
    context, page = new_page(chromium)
    submit_login(page, live, investigator.username, PASSWORD, codes[0])
    assert page.url == f"{live}/admin/", page.url
    context.close()
    context, page = new_page(chromium, locale="zh-CN" if language == "zh-hans" else "en-GB")
    submit_login(page, live, investigator.username, PASSWORD, codes[0])
    assert page.url.startswith(f"{live}/admin/login/"), page.url
    errors = page.locator(".errornote").all_inner_texts()
    expected = "备用码已使用过" if language == "zh-hans" else "that backup code was used"
    assert any(expected in error for error in errors), errors
    shot(page, artifacts, f"backup-code-refused-{language}")
    context.close()
