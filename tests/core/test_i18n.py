"""Models' names in Chinese: singular and plural, including the plurals Django makes itself."""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.utils import translation
from django.utils.text import capfirst

from core.i18n import OUR_APPS, translate_model_labels

MESSAGES = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"
OUR_MODELS = [model for label in OUR_APPS for model in apps.get_app_config(label).get_models()]


def catalogue() -> dict[str, str]:
    """The .po file's translations, by English text (those without a context: `gettext` reads only those)."""
    text = (MESSAGES / "django.po").read_text(encoding="utf-8")
    entries = re.findall(r'^(msgctxt ".*"\n)?msgid "(.*)"\nmsgstr "(.*)"$', text, flags=re.M)
    return {
        msgid.replace('\\"', '"'): msgstr.replace('\\"', '"')
        for context, msgid, msgstr in entries
        if msgid and not context
    }


def names(model, language: str) -> tuple[str, str]:
    with translation.override(language):
        return str(model._meta.verbose_name), str(model._meta.verbose_name_plural)


@pytest.mark.parametrize("model", OUR_MODELS, ids=lambda model: model._meta.label)
def test_every_model_name_and_plural_is_chinese_in_chinese(model):
    translations = catalogue()
    english = names(model, "en")
    chinese = names(model, "zh-hans")

    for en, zh in zip(english, chinese, strict=True):
        assert en in translations, f"{en!r} is not in the catalogue"
        assert zh == translations[en]
        assert zh != en


def test_a_plural_django_made_from_the_singular_is_translated():
    from patients.models import Patient

    assert "verbose_name_plural" not in Patient._meta.original_attrs
    assert names(Patient, "en") == ("patient", "patients")
    assert names(Patient, "zh-hans") == ("患者", "患者")


def test_translating_the_labels_again_changes_nothing():
    before = {model: (names(model, "en"), names(model, "zh-hans")) for model in OUR_MODELS}

    translate_model_labels()

    assert {model: (names(model, "en"), names(model, "zh-hans")) for model in OUR_MODELS} == before


def test_the_compiled_catalogue_matches_the_po_file():
    with (MESSAGES / "django.mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    translations = catalogue()

    assert {msgid: compiled.gettext(msgid) for msgid in translations} == translations


@pytest.fixture
def language_restored():
    """A request leaves its language active in this thread (LocaleMiddleware): later tests must not run in it."""
    yield
    translation.deactivate()


@pytest.mark.django_db
@pytest.mark.usefixtures("language_restored")
def test_the_admin_index_in_chinese_shows_no_english_model_plural(client, superuser, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    client.force_login(superuser)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"

    response = client.get("/admin/")

    assert response.status_code == 200
    page = response.content.decode()
    listed = {
        apps.get_model(app["app_label"], entry["object_name"]): entry["name"]
        for app in response.context["app_list"]
        if app["app_label"] in OUR_APPS
        for entry in app["models"]
    }
    assert {"patients.Patient", "followup.Visit", "registry.Site"} <= {model._meta.label for model in listed}
    for model, shown in listed.items():
        assert shown == capfirst(names(model, "zh-hans")[1])
    for model in admin.site._registry:
        if model._meta.app_label in OUR_APPS:
            assert f">{capfirst(names(model, 'en')[1])}</a>" not in page


@pytest.mark.django_db
def test_the_doors_are_named_in_chinese_wherever_they_are_shown():
    """The door a change came through, from its label, from a history row (whose models keep their English
    labels) and from a query's message, in both languages."""
    from core.audit import Door
    from followup.models import Visit
    from quality.models import QueryMessage

    translations = catalogue()
    history_row = Visit.history.model(history_door=Door.ADMIN)
    message = QueryMessage(door=Door.ADMIN)
    for door in Door:
        english = str(door.label)
        with translation.override("en"):
            assert english == dict(Door.choices)[door]
        with translation.override("zh-hans"):
            assert str(door.label) == translations[english] != english
            assert str(dict(Door.choices)[door]) == translations[english]
            history_row.history_door = message.door = door
            assert history_row.get_history_door_display() == translations[english]
            assert message.get_door_display() == translations[english]
    with translation.override("en"):
        assert message.get_door_display() == "System (task or shell)"
