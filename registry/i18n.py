"""Two languages (English and Simplified Chinese) for the registry's own labels.

The models' names, field labels, help texts and choice labels are written in English in the code; at start-up
`translate_model_labels` turns each into a lazy translation, so the admin, forms and lists show them in the
user's language from `locale/zh_Hans/LC_MESSAGES/django.po`.
"""

from __future__ import annotations

from django.apps import apps
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

OUR_APPS = ("registry", "patients", "followup")


def _lazy(text):
    if text in (None, "") or isinstance(text, Promise):
        return text
    return gettext_lazy(str(text))


def translate_model_labels() -> None:
    for label in OUR_APPS:
        config = apps.get_app_config(label)
        config.verbose_name = _lazy(config.verbose_name)
        for model in config.get_models():
            if model.__name__.startswith("Historical"):
                continue
            opts = model._meta
            opts.verbose_name = _lazy(opts.verbose_name)
            opts.verbose_name_plural = _lazy(opts.verbose_name_plural)
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
        texts.add(str(config.verbose_name))
        for model in config.get_models():
            if model.__name__.startswith("Historical"):
                continue
            opts = model._meta
            with translation.override("en"):
                texts.update({str(opts.verbose_name), str(opts.verbose_name_plural)})
                for field in [*opts.fields, *opts.many_to_many]:
                    texts.add(str(field.verbose_name))
                    if field.help_text:
                        texts.add(str(field.help_text))
                    for _, name in field.choices or []:
                        texts.add(str(name))
    return sorted(t for t in texts if t)
