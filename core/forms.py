"""Form fields that read input one way only: what is typed is taken as written, or refused with the rule."""

from __future__ import annotations

import re
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import DecimalValidator, MaxValueValidator, MinValueValidator
from django.utils.translation import gettext_lazy as _

NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


class StrictDecimalField(forms.CharField):
    """A number typed with digits and, for decimals, one point: "68.5". A comma (a decimal comma or a
    thousands separator) or any other text is refused at the field, never reinterpreted or dropped.

    The widget is a text input (with the decimal keypad on phones): a browser's number input silently
    sends nothing for text it cannot read, so the server would never see what was typed.
    """

    widget = forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "spellcheck": "false"})
    default_error_messages = {
        "comma": _("Use a point for decimals and no thousands separator (68.5, 1200): “%(value)s” was not read."),
        "invalid": _("“%(value)s” is not a number: write digits, with a point for decimals (68.5)."),
    }

    def __init__(self, *, max_digits=None, decimal_places=None, min_value=None, max_value=None, **kwargs):
        super().__init__(strip=True, **kwargs)
        if max_digits is not None or decimal_places is not None:
            self.validators.append(DecimalValidator(max_digits, decimal_places))
        if min_value is not None:
            self.validators.append(MinValueValidator(min_value))
        if max_value is not None:
            self.validators.append(MaxValueValidator(max_value))

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return None
        if "," in value or "，" in value:
            raise ValidationError(self.error_messages["comma"], code="comma", params={"value": value})
        if not NUMBER.fullmatch(value):
            raise ValidationError(self.error_messages["invalid"], code="invalid", params={"value": value})
        return Decimal(value)

    def prepare_value(self, value):
        return "" if value is None else str(value)
