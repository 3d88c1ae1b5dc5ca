"""Wrong passwords and authenticator codes given to sign: each is recorded, and after five within the sign-in
lockout's cool-off (AXES_FAILURE_LIMIT, AXES_COOLOFF_HOURS: 5 and 30 minutes) signing is locked for the user
for 30 minutes, whatever the password given, with a message saying until when."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from quality.models import Signature, SigningFailure
from quality.services import review
from registry.constants import Role
from tests.factories import make_user
from tests.quality.conftest import PASSWORD

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 9, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def sign(record, user, password=PASSWORD, otp_token=""):
    return review.signature_sign(record=record, actor=user, password=password, otp_token=otp_token)


def refusal(record, user, password=PASSWORD, otp_token="") -> dict:
    with pytest.raises(ValidationError) as refused:
        sign(record, user, password, otp_token)
    return refused.value.message_dict


def test_five_wrong_passwords_lock_signing_for_30_minutes(clinical, investigator_a, clock):
    visit = clinical.visit("M1")
    for attempt in range(1, 5):
        assert refusal(visit, investigator_a, "wrong")["password"] == [
            "The password is not correct; the record was not signed."
        ], attempt
        clock.shift(dt.timedelta(minutes=1))
    fifth = refusal(visit, investigator_a, "wrong")["password"][0]
    assert "signing is now locked for your account for 30 minutes" in fifth
    assert SigningFailure.objects.filter(user=investigator_a).count() == 5
    assert set(SigningFailure.objects.values_list("field", flat=True)) == {"password"}

    # The right password is refused while the lock holds, and the refusal says until when (09:34 UTC).
    clock.shift(dt.timedelta(minutes=29))
    locked = refusal(visit, investigator_a)["password"][0]
    assert locked.startswith("Signing is locked for your account after 5 wrong passwords or authenticator codes")
    assert "09:34" in locked
    assert not Signature.objects.exists()
    assert SigningFailure.objects.filter(user=investigator_a).count() == 5  # a refusal while locked is no failure

    clock.shift(dt.timedelta(minutes=1))
    assert sign(visit, investigator_a).visit_id == visit.pk


def test_wrong_authenticator_codes_count_too(clinical, investigator_a, clock):
    TOTPDevice.objects.create(user=investigator_a, name="phone", confirmed=True)
    for _ in range(3):
        assert "otp_token" in refusal(clinical.ae, investigator_a, PASSWORD, "000000")
    for _ in range(2):
        assert "password" in refusal(clinical.ae, investigator_a, "wrong", "000000")
    assert sorted(SigningFailure.objects.values_list("field", flat=True)) == ["otp_token"] * 3 + ["password"] * 2
    device = TOTPDevice.objects.get(user=investigator_a)
    code = f"{TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token():0{device.digits}d}"
    assert "locked" in refusal(clinical.ae, investigator_a, PASSWORD, code)["password"][0]


def test_a_signature_starts_the_count_again(clinical, investigator_a, clock):
    for _ in range(4):
        refusal(clinical.visit("M1"), investigator_a, "wrong")
    sign(clinical.visit("M1"), investigator_a)
    for _ in range(4):
        refusal(clinical.ae, investigator_a, "wrong")
    assert sign(clinical.ae, investigator_a).adverse_event_id == clinical.ae.pk


def test_failures_older_than_the_cool_off_do_not_count(clinical, investigator_a, clock):
    for _ in range(4):
        refusal(clinical.visit("M1"), investigator_a, "wrong")
    clock.shift(dt.timedelta(minutes=31))
    refusal(clinical.visit("M1"), investigator_a, "wrong")
    assert sign(clinical.visit("M1"), investigator_a).visit_id == clinical.visit("M1").pk


def test_the_lock_is_the_users_alone(clinical, investigator_a, site_a, clock):
    other = make_user("inv_a2", site_a, role=Role.INVESTIGATOR, password=PASSWORD)
    for _ in range(5):
        refusal(clinical.visit("M1"), investigator_a, "wrong")
    assert sign(clinical.visit("M1"), other).signer_id == other.pk


def test_the_sign_page_shows_the_lock_beside_the_password(client, clinical, investigator_a, clock):
    client.force_login(investigator_a)
    url = f"/admin/quality/signature/sign/visit/{clinical.visit('M1').pk}/"
    for _ in range(5):
        assert client.post(url, {"password": "wrong"}).status_code == 200
    response = client.post(url, {"password": PASSWORD})
    assert response.status_code == 200
    assert "Signing is locked for your account" in response.content.decode()
    assert not Signature.objects.exists()
    # Signing in is a separate lockout: the session and the rest of the admin go on.
    assert client.get("/admin/").status_code == 200


def test_failed_attempts_are_listed_for_the_sites_staff_only(
    client, clinical, investigator_a, data_manager_a, data_manager_b, clock
):
    refusal(clinical.visit("M1"), investigator_a, "wrong")
    client.force_login(data_manager_a)
    response = client.get("/admin/quality/signingfailure/")
    assert response.status_code == 200 and "inv_a" in response.content.decode()
    client.force_login(data_manager_b)
    assert "inv_a" not in client.get("/admin/quality/signingfailure/").content.decode()
