"""Form fields that read input one way only: what is typed is taken as written, or refused with the rule."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import DecimalValidator, MaxValueValidator, MinValueValidator
from django.utils.translation import gettext_lazy as _

from core.spreadsheets import strip_keeping_formula_start

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


@dataclass(frozen=True)
class Censored:
    """A number typed with a comparator: "<10" is Censored(Decimal("10"), "<"); the comparator is "" for a
    number typed alone."""

    number: Decimal
    comparator: str = ""

    def __str__(self) -> str:
        return f"{self.comparator}{self.number}"


# A comparator, then the number: "<10", "< 10", "<=10", "≤10" (the sign written as one character is the same
# comparator). Anything else before or after the number is refused, never read as a number.
COMPARATOR_SIGNS = {"<": "<", "<=": "<=", "≤": "<=", ">=": ">=", "≥": ">=", ">": ">"}
CENSORED_NUMBER = re.compile(r"(?P<sign><=|>=|<|>|≤|≥)?\s*(?P<number>.*)", re.DOTALL)


class CensoredDecimalField(StrictDecimalField):
    """`StrictDecimalField` for a laboratory result, which may be censored: "<10" (below a limit of 10),
    "<=10" or "≤10", ">=2000" or "≥2000", ">2000"; a space after the sign is allowed. The value is a
    `Censored`. Two signs ("<<10", "<>10", "=<10"), a sign alone, a sign after the number ("10<") or any other
    text is refused with the rule; nothing is dropped."""

    default_error_messages = {
        "sign_only": _("%(label)s: “%(value)s” has a sign but no number: write the limit after it (<10)."),
        "signs": _(
            "%(label)s: “%(value)s” is not one comparator and a number: write one of <, <=, >=, > before the "
            "number (<10, >=2000)."
        ),
    }

    def to_python(self, value):
        text = forms.CharField.to_python(self, value)
        if text in self.empty_values:
            return None
        match = CENSORED_NUMBER.fullmatch(text)
        sign, number = match["sign"] or "", match["number"].strip()
        params = {"value": text, "label": self.label}
        if sign and not number:
            raise ValidationError(self.error_messages["sign_only"], code="sign_only", params=params)
        if any(ch in number for ch in "<>=≤≥") or (not sign and "=" in text):
            raise ValidationError(self.error_messages["signs"], code="signs", params=params)
        try:
            parsed = super().to_python(number)
        except ValidationError as exc:  # the rule of a plain number, quoting what was typed, sign included
            raise ValidationError(self.error_messages[exc.code], code=exc.code, params=params) from None
        return Censored(parsed, COMPARATOR_SIGNS.get(sign, ""))

    def run_validators(self, value):
        super().run_validators(value.number if isinstance(value, Censored) else value)

    def prepare_value(self, value):
        return "" if value is None else str(value)


class _KeepsFormulaStart:
    """Trims white space as the form field would, except a tab or a carriage return at the start (see
    `core.spreadsheets.strip_keeping_formula_start`), so the services' rule sees text as it was typed."""

    def to_python(self, value):
        strip, self.strip = self.strip, False
        try:
            value = super().to_python(value)
        finally:
            self.strip = strip
        return strip_keeping_formula_start(value) if strip and isinstance(value, str) else value


_KEEPING: dict[type, type] = {}


def keep_formula_start(field: forms.CharField) -> forms.CharField:
    """`field` (a CharField or a subclass, such as EmailField), made to trim as `_KeepsFormulaStart` does."""
    cls = type(field)
    if not isinstance(field, _KeepsFormulaStart):
        if cls not in _KEEPING:
            _KEEPING[cls] = type(f"FormulaStart{cls.__name__}", (_KeepsFormulaStart, cls), {})
        field.__class__ = _KEEPING[cls]
    return field


class PlainTextFormMixin:
    """For a model form: the model's `PLAIN_TEXT_FIELDS` (text that may not start like a spreadsheet formula)
    keep a leading tab or carriage return, for the service to refuse, instead of trimming it away."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in getattr(self._meta.model, "PLAIN_TEXT_FIELDS", ()):
            if isinstance(self.fields.get(name), forms.CharField):
                keep_formula_start(self.fields[name])
