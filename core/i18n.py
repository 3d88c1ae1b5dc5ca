"""Two languages (English and Simplified Chinese) for the registry's own labels.

The models' names, field labels, help texts and choice labels are written in English in the code; at start-up
`translate_model_labels` turns each into a lazy translation, so the admin, forms and lists show them in the
user's language from `locale/zh_Hans/LC_MESSAGES/django.po`.

Some labels are lazy before we see them: Django makes `verbose_name_plural` from `verbose_name` + "s" when
Meta gives none, and simple-history names its history models "historical ...". Such a label is read in
English and translated by its text like any other.
"""

from __future__ import annotations

from django.apps import apps
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

OUR_APPS = ("registry", "patients", "followup", "notifications", "reporting", "quality", "intake")


def english(text) -> str:
    """The English text of a label, plain or lazy."""
    if isinstance(text, Promise):
        with translation.override("en"):
            return str(text)
    return str(text)


def _lazy(text):
    if text is None:
        return text
    plain = english(text)
    if plain == "":
        return text
    return gettext_lazy(plain)


def _is_history_model(model) -> bool:
    return model.__name__.startswith("Historical")


def translate_model_labels() -> None:
    for label in OUR_APPS:
        config = apps.get_app_config(label)
        config.verbose_name = _lazy(config.verbose_name)
        for model in config.get_models():
            opts = model._meta
            opts.verbose_name = _lazy(opts.verbose_name)
            opts.verbose_name_plural = _lazy(opts.verbose_name_plural)
            if _is_history_model(model):
                continue
            for field in [*opts.fields, *opts.many_to_many]:
                field.verbose_name = _lazy(field.verbose_name)
                field.help_text = _lazy(field.help_text)
                if field.choices:
                    field.choices = [(value, _lazy(name)) for value, name in field.choices]


def model_label_texts() -> list[str]:
    """Every English label the catalogue must translate (for keeping the .po file complete)."""
    texts = set()
    for label in OUR_APPS:
        config = apps.get_app_config(label)
        texts.add(english(config.verbose_name))
        for model in config.get_models():
            opts = model._meta
            texts.update({english(opts.verbose_name), english(opts.verbose_name_plural)})
            if _is_history_model(model):
                continue
            for field in [*opts.fields, *opts.many_to_many]:
                texts.add(english(field.verbose_name))
                if field.help_text:
                    texts.add(english(field.help_text))
                for _, name in field.choices or []:
                    texts.add(english(name))
    return sorted(t for t in texts if t)


def in_language(text: str, *, zh: str = "") -> str:
    """A text kept in the data in both languages (a visit's label): its Chinese form while Chinese is active
    and one is given, else the English one."""
    language = translation.get_language() or ""
    if zh and language.lower().startswith("zh"):
        return zh
    return text
