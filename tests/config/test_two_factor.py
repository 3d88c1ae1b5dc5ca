"""Two-factor sign-in: self-enrolment with a QR code, backup codes, sign-in with either, the requirement for
investigators and data managers, and a data manager's reset of a device (registry/two_factor.py)."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from registry import constants as rc
from registry import two_factor
from registry.models import Membership, SecondFactorEvent
from tests.factories import make_site, make_superuser, make_user

pytestmark = pytest.mark.django_db

PASSWORD = "Correct-horse-battery-42"
ENROL_URL = "/admin/two-factor/"


@pytest.fixture
def site(db):
    return make_site("TWOF")


@pytest.fixture
def coordinator(site):
    return make_user("twof.coordinator", site, role=rc.Role.COORDINATOR, password=PASSWORD)


@pytest.fixture
def investigator(site):
    return make_user("twof.investigator", site, role=rc.Role.INVESTIGATOR, password=PASSWORD)


@pytest.fixture
def required(settings):
    settings.REGISTRY_REQUIRE_2FA = True


def code_of(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """The device's code now (or `steps_ahead` steps later: the device accepts one step of drift)."""
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, steps_ahead):0{device.digits}d}"


def login(client, username: str, password: str = PASSWORD, **extra):
    return client.post(
        "/admin/login/?next=/admin/", {"username": username, "password": password, "next": "/admin/", **extra}
    )


def signed_in(client) -> bool:
    response = client.get("/admin/")
    return response.status_code == 200 and 'id="worklist"' in response.content.decode()


def enrol(user) -> tuple[TOTPDevice, list[str]]:
    device = two_factor.totp_begin(user=user)
    return device, two_factor.totp_confirm(user=user, device=device, token=code_of(device))


# Services -------------------------------------------------------------------------------------------------


def test_enrolment_confirms_the_device_and_issues_ten_backup_codes(coordinator):
    device = two_factor.totp_begin(user=coordinator)
    assert not device.confirmed and not two_factor.second_factor_enrolled(coordinator)
    assert two_factor.totp_begin(user=coordinator).pk == device.pk  # a reload shows the same key
    with pytest.raises(ValidationError) as refused:
        two_factor.totp_confirm(user=coordinator, device=device, token="12345")
    assert "token" in refused.value.message_dict
    codes = two_factor.totp_confirm(user=coordinator, device=device, token=code_of(device))
    device.refresh_from_db()
    assert device.confirmed and two_factor.second_factor_enrolled(coordinator)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert StaticToken.objects.filter(device__user=coordinator).count() == 10
    assert SecondFactorEvent.objects.filter(user=coordinator, action=rc.SecondFactorAction.ENROLLED).count() == 1
    with pytest.raises(ValidationError):
        two_factor.totp_begin(user=coordinator)  # already enrolled: reset first


def test_the_otpauth_uri_names_the_issuer_and_the_key(coordinator):
    device = two_factor.totp_begin(user=coordinator)
    uri = two_factor.totp_uri(device)
    assert uri.startswith("otpauth://totp/") and "issuer=MSCT" in uri
    assert f"secret={two_factor.totp_key_text(device).replace(' ', '')}" in uri


def test_regenerating_backup_codes_replaces_the_old_ones(coordinator):
    _, first = enrol(coordinator)
    second = two_factor.backup_codes_regenerate(user=coordinator)
    assert len(second) == 10 and not set(first) & set(second)
    assert set(StaticToken.objects.filter(device__user=coordinator).values_list("token", flat=True)) == set(second)
    assert StaticDevice.objects.filter(user=coordinator).count() == 1


def test_regenerating_needs_an_enrolled_device(coordinator):
    with pytest.raises(ValidationError):
        two_factor.backup_codes_regenerate(user=coordinator)


def test_requirement_follows_the_setting_and_the_role(coordinator, investigator, site, settings):
    settings.REGISTRY_REQUIRE_2FA = False
    assert not two_factor.second_factor_required(investigator)
    settings.REGISTRY_REQUIRE_2FA = True
    assert two_factor.second_factor_required(investigator)
    assert not two_factor.second_factor_required(coordinator)
    manager = make_user("twof.manager", site, role=rc.Role.DATA_MANAGER)
    assert two_factor.second_factor_required(manager)
    assert two_factor.second_factor_required(make_superuser("twof.root"))


def test_a_data_manager_resets_a_device_of_their_sites_only(coordinator, site):
    enrol(coordinator)
    other_site = make_site("TWOG")
    manager_elsewhere = make_user("twof.manager.g", other_site, role=rc.Role.DATA_MANAGER)
    with pytest.raises(PermissionDenied):
        two_factor.second_factor_reset(actor=manager_elsewhere, user=coordinator, reason="lost phone")
    colleague = make_user("twof.colleague", site, role=rc.Role.COORDINATOR)
    with pytest.raises(PermissionDenied):
        two_factor.second_factor_reset(actor=colleague, user=coordinator, reason="lost phone")
    assert two_factor.second_factor_enrolled(coordinator)

    manager = make_user("twof.manager", site, role=rc.Role.DATA_MANAGER)
    two_factor.second_factor_reset(actor=manager, user=coordinator, reason="lost phone")
    assert not two_factor.second_factor_enrolled(coordinator)
    assert not TOTPDevice.objects.filter(user=coordinator).exists()
    assert not StaticDevice.objects.filter(user=coordinator).exists()
    event = SecondFactorEvent.objects.get(user=coordinator, action=rc.SecondFactorAction.RESET)
    assert event.actor == manager and event.reason == "lost phone" and event.username == coordinator.username


# Signing in ---------------------------------------------------------------------------------------------


def test_the_login_page_has_a_code_field(client):
    page = client.get("/admin/login/?next=/admin/").content.decode()
    assert 'name="otp_token"' in page


def test_an_enrolled_user_needs_the_code(client, coordinator):
    device, _ = enrol(coordinator)
    response = login(client, coordinator.username)
    assert response.status_code == 200 and not signed_in(client)
    assert "otp_token" in response.content.decode()
    response = login(client, coordinator.username, otp_token="000000")
    assert response.status_code == 200 and not signed_in(client)
    device.refresh_from_db()
    device.throttle_reset()
    response = login(client, coordinator.username, otp_token=code_of(device, 1))
    assert response.status_code == 302 and signed_in(client)


def test_a_backup_code_signs_in_once(client, coordinator):
    _, codes = enrol(coordinator)
    assert login(client, coordinator.username, otp_token=codes[0]).status_code == 302
    assert signed_in(client)
    client.logout()
    response = login(client, coordinator.username, otp_token=codes[0])
    assert response.status_code == 200 and not signed_in(client)
    assert StaticToken.objects.filter(device__user=coordinator).count() == 9


def test_a_user_without_a_device_signs_in_with_the_password_when_not_required(client, coordinator, required):
    assert login(client, coordinator.username).status_code == 302
    assert signed_in(client)


def test_a_required_user_without_a_device_is_sent_to_enrolment(client, investigator, required):
    response = login(client, investigator.username)
    assert response.status_code == 302
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"] == ENROL_URL
    assert client.get("/admin/patients/patient/")["Location"] == ENROL_URL
    page = client.get(ENROL_URL)
    assert page.status_code == 200 and "<svg" in page.content.decode()


def test_enrolment_through_the_page_then_the_admin_opens(client, investigator, required):
    login(client, investigator.username)
    page = client.get(ENROL_URL).content.decode()
    key = re.search(r'id="totp-key">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    device = TOTPDevice.objects.get(user=investigator, confirmed=False)
    assert device.key == __import__("base64").b32decode(key).hex()
    assert "otpauth://totp/" in page or "<svg" in page
    response = client.post(ENROL_URL, {"action": "confirm", "token": "000000"})
    assert response.status_code == 200 and "not correct" in response.content.decode()
    device.refresh_from_db()
    device.throttle_reset()
    response = client.post(ENROL_URL, {"action": "confirm", "token": code_of(device)})
    page = response.content.decode()
    assert response.status_code == 200 and 'id="backup-codes"' in page
    codes = re.findall(r'<li class="backup-code"><code>([a-z2-7]+)</code></li>', page)
    assert len(codes) == 10
    assert signed_in(client)
    # Shown once: the page now says how many are left, not which.
    page = client.get(ENROL_URL).content.decode()
    assert codes[0] not in page and "10" in page
    response = client.post(ENROL_URL, {"action": "regenerate"})
    new_codes = re.findall(r'<li class="backup-code"><code>([a-z2-7]+)</code></li>', response.content.decode())
    assert len(new_codes) == 10 and not set(new_codes) & set(codes)


def test_an_enrolled_user_whose_session_lacks_the_second_factor_goes_back_to_sign_in(client, coordinator):
    enrol(coordinator)
    client.force_login(coordinator)
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    response = client.get(ENROL_URL)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert two_factor.backup_codes_left(coordinator) == 10  # nothing was changed


def test_the_enrolment_page_needs_a_signed_in_user(client):
    response = client.get(ENROL_URL)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_the_user_tools_link_to_two_factor_sign_in(client, coordinator):
    login(client, coordinator.username)
    page = client.get("/admin/").content.decode()
    assert f'href="{ENROL_URL}"' in page


def test_the_enrolment_page_in_chinese(client, coordinator, settings):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    login(client, coordinator.username)
    page = client.get(ENROL_URL).content.decode()
    assert "两步验证" in page and "Scan" not in page


def test_the_reset_action_in_the_admin(client, coordinator, site):
    enrol(coordinator)
    manager = make_user("twof.manager", site, role=rc.Role.DATA_MANAGER, password=PASSWORD)
    login(client, manager.username)
    membership = Membership.objects.get(user=coordinator)
    response = client.post(
        "/admin/registry/membership/",
        {"action": "reset_second_factor", "index": 0, "_selected_action": [membership.pk]},
    )
    assert response.status_code == 302
    assert not two_factor.second_factor_enrolled(coordinator)
    assert SecondFactorEvent.objects.filter(user=coordinator, actor=manager).exists()


def test_a_wrong_code_at_enrolment_makes_the_next_try_wait(coordinator):
    device = two_factor.totp_begin(user=coordinator)
    with pytest.raises(ValidationError):
        two_factor.totp_confirm(user=coordinator, device=device, token="000000")
    device.refresh_from_db()
    with pytest.raises(ValidationError) as refused:
        two_factor.totp_confirm(user=coordinator, device=device, token=code_of(device))
    assert "wait a few seconds" in refused.value.message_dict["token"][0]
    device.throttle_reset()
    assert len(two_factor.totp_confirm(user=coordinator, device=device, token=code_of(device))) == 10


def test_a_required_user_on_the_enrolment_page_can_log_out_but_sees_no_menu(client, investigator, required):
    login(client, investigator.username)
    page = client.get(ENROL_URL).content.decode()
    assert 'id="logout-form"' in page
    assert 'id="nav-sidebar"' not in page


def test_a_required_user_can_sign_out_before_setting_up(client, investigator, required):
    login(client, investigator.username)
    response = client.post("/admin/logout/")
    assert response.status_code == 200  # the admin's "logged out" page
    assert "_auth_user_id" not in client.session
    assert client.get(ENROL_URL)["Location"].startswith("/admin/login/")


def test_the_audit_is_read_by_data_managers_of_the_persons_site(client, coordinator, site):
    enrol(coordinator)
    other = make_user("twof.other", make_site("TWOH"), role=rc.Role.COORDINATOR)
    enrol(other)
    manager = make_user("twof.manager", site, role=rc.Role.DATA_MANAGER, password=PASSWORD)
    assert [event.username for event in two_factor.second_factor_events_for(manager)] == [coordinator.username]
    client.force_login(manager)
    page = client.get("/admin/registry/secondfactorevent/").content.decode()
    assert coordinator.username in page and other.username not in page
    colleague = make_user("twof.colleague", site, role=rc.Role.COORDINATOR)
    client.force_login(colleague)
    assert client.get("/admin/registry/secondfactorevent/").status_code == 403
    assert two_factor.second_factor_events_for(colleague).count() == 0


def test_the_audit_permission_is_read_once_per_request_in_the_shared_memo(rf, site, django_assert_num_queries):
    """The app list and the model's permissions ask the same question: one query per request, answered from
    the user's memberships as the admin's per-request memo keeps them (registry/admin_tools.request_memberships)
    for every other permission answer."""
    from django.contrib import admin

    manager = make_user("twof.memo.manager", site, role=rc.Role.DATA_MANAGER)
    colleague = make_user("twof.memo.colleague", site, role=rc.Role.COORDINATOR)
    model_admin = admin.site._registry[SecondFactorEvent]
    for user, expected in ((manager, True), (colleague, False)):
        request = rf.get("/admin/")
        request.user = user
        with django_assert_num_queries(1):
            assert model_admin.has_module_permission(request) is expected
            assert model_admin.has_view_permission(request) is expected
            assert model_admin.has_view_permission(request, obj=None) is expected
        assert list(request.__dict__["_registry_permission_memo"]) == [("memberships",)]
        assert not hasattr(request, "_registry_is_data_manager")
