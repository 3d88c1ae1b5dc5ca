"""Signing in through the admin's own sign-in page, as a person does, for the browser tests."""

from __future__ import annotations


def sign_in(page, live: str, username: str, password: str, language: str = "en") -> None:
    """Sign in as `username` on `page` (the worklist opens), then choose `language` in the header."""
    page.goto(f"{live}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.click("#login-form input[type=submit]")
    assert page.url == f"{live}/admin/", page.url
    if language != "en":
        with page.expect_navigation():
            page.select_option("#language-select", language)


def window(chromium, live: str, username: str, password: str, language: str):
    """A browser window of its own (its own cookies), signed in as `username`, in `language`."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, locale="en-GB")
    context.set_default_timeout(20_000)
    page = context.new_page()
    sign_in(page, live, username, password, language)
    return context, page
