"""Text that a spreadsheet would run as a formula (CSV injection, OWASP "CSV Injection").

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is taken by Excel, LibreOffice and
Google Sheets as the start of a formula (`=HYPERLINK(...)`, `@SUM(...)`). The registry does two things about it:

- where no real text starts so (a term, a name, a title: `PLAIN_TEXT_FIELDS` of each model), the services
  refuse it at every door, naming the field (`formula_errors`);
- where free text may start so (a note may begin with "- " or "+"), every CSV it writes goes through
  `SpreadsheetSafeWriter`, which prefixes such a cell with a single quote, as OWASP advises. A plain number
  ("-4", "+1.5e3") is left alone: a spreadsheet reads it as the number it is.
"""

from __future__ import annotations

import csv
import re

from django.utils.translation import gettext, gettext_lazy

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_SHOWN = {"\t": gettext_lazy("a tab"), "\r": gettext_lazy("a carriage return")}
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_SPACE_BEFORE_FORMULA = re.compile(r"^[^\S\t\r]+")  # white space other than a tab or a carriage return


def strip_keeping_formula_start(value: str) -> str:
    """`value` without the white space around it, except a tab or a carriage return at its start (and the
    text after them): a form or serializer that trims text leaves the rule above to see a tab followed by
    "=cmd" as it was sent, rather than trim it into something else ("=cmd", or "cmd" that would pass)."""
    value = _SPACE_BEFORE_FORMULA.sub("", value)
    return value.rstrip() if value.startswith(("\t", "\r")) else value.strip()


def formula_start(value) -> str | None:
    """The character that makes `value` look like a formula to a spreadsheet (None when it does not)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return value[0]
    return None


def formula_errors(**values) -> dict[str, str]:
    """Per field, the error for a value that starts like a formula (none for the others)."""
    errors = {}
    for name, value in values.items():
        first = formula_start(value)
        if first is not None:
            shown = _SHOWN.get(first, f"'{first}'")
            errors[name] = gettext(
                "%(field)s: the text starts with %(start)s; it cannot start with =, +, -, @, a tab or a carriage "
                "return (a spreadsheet would run it as a formula)."
            ) % {"field": name, "start": shown}
    return errors


def neutralise(value):
    """`value` as a CSV cell a spreadsheet shows as text: a string starting like a formula gets a leading
    single quote, unless it is a plain number; anything else is returned unchanged."""
    if formula_start(value) is None or _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value


class SpreadsheetSafeWriter:
    """`csv.writer` whose every cell goes through `neutralise`."""

    def __init__(self, target, **kwargs):
        self._writer = csv.writer(target, **kwargs)

    def writerow(self, row):
        return self._writer.writerow([neutralise(value) for value in row])

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)
