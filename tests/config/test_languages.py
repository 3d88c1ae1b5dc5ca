"""English and Simplified Chinese: every label of ours is in the catalogue; the interface follows the user."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation

from core.i18n import model_label_texts
from notifications.models import NotificationPreference
from tests.factories import make_site, make_user

CATALOGUE = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"


def catalogue_ids() -> set[str]:
    text = CATALOGUE.read_text(encoding="utf-8")
    return {m.replace('\\"', '"') for m in re.findall(r'^msgid "(.*)"$', text, flags=re.M)} - {""}


def test_every_model_name_field_label_help_text_and_choice_has_a_chinese_translation():
    missing = [text for text in model_label_texts() if text not in catalogue_ids()]
    assert missing == []


def test_the_compiled_catalogue_is_used():
    with translation.override("zh-hans"):
        assert translation.gettext("subject code") == "受试者编号"
        assert translation.gettext("Overdue visits") == "逾期访视"
    with translation.override("en"):
        assert translation.gettext("subject code") == "subject code"


def test_model_labels_follow_the_active_language():
    from patients.models import Patient

    with translation.override("zh-hans"):
        assert str(Patient._meta.verbose_name) == "患者"
        assert str(Patient._meta.get_field("subject_code").verbose_name) == "受试者编号"
        assert dict(Patient._meta.get_field("status").choices)["withdrawn"] == "已退出"
    with translation.override("en"):
        assert str(Patient._meta.verbose_name) == "patient"


@pytest.mark.django_db
def test_the_chosen_language_is_remembered_for_the_next_session(client, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    site = make_site("LANG", name="Lang", country="CN", time_zone="Asia/Shanghai")
    user = make_user("lang.coordinator", site, role="coordinator", password=None)
    client.force_login(user)
    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/admin/"})
    assert response.status_code == 302
    assert NotificationPreference.objects.get(user=user).language == "zh-hans"

    client.cookies.clear()  # a new browser: no language cookie
    client.force_login(user)
    page = client.get("/admin/").content.decode()
    assert "工作清单" in page and "您的中心今日概况" in page


@pytest.mark.django_db
def test_english_is_the_default(client, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    site = make_site("LANG", name="Lang", country="CN", time_zone="Asia/Shanghai")
    user = make_user("lang.coordinator", site, role="coordinator", password=None)
    client.force_login(user)
    page = client.get("/admin/").content.decode()
    assert "Your sites today" in page and "工作清单" not in page
