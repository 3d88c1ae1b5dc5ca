"""The rows of the big lists (visits, results, outcomes), written in one pass.

Django's admin works out, for every cell of every row, what the column is (a field, a method of the admin, a
callable), its empty-value mark, its classes and its link, and renders each row's checkbox through the form
widgets' templates: about a quarter of a 100-row list's CPU. `RowWriter` works each column out once per page
and then writes every row with string operations. What it writes is what Django's `items_for_result` writes,
cell for cell (tests/registry/test_admin_rows.py compares the two on every big list); a column it does not
know how to write quickly is handed to Django's own code, and so is a whole page in a pop-up or with
editable rows.
"""

from __future__ import annotations

import datetime

from django import forms
from django.contrib.admin import helpers
from django.contrib.admin.templatetags.admin_list import _boolean_icon, _coerce_field_name, items_for_result, results
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import (
    FieldIsAForeignKeyColumnName,
    _get_non_gfk_field,
    display_for_field,
    display_for_value,
    quote,
)
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db import models
from django.urls import NoReverseMatch
from django.utils.html import conditional_escape, escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

# Markers for a row's key and label: letters only, so that no quoting or escaping alters them.
KEY_MARK = "ROWKEYMARK"
LABEL_MARK = "ROWLABELMARK"


class _Icons(dict):
    """The admin's yes, no and unknown icons, each drawn once per page (a drawing looks up a static file's URL)."""

    def __missing__(self, value):
        self[value] = _boolean_icon(value)
        return self[value]


class Column:
    """One column of the list: how to read a row's value and how to write its cell."""

    def __init__(self, writer: RowWriter, index: int, name, link: bool):
        cl = writer.cl
        self.name, self.link = name, link
        self.empty = self.admin_empty = cl.model_admin.get_empty_value_display()
        self.classes = self.own_class = f"field-{_coerce_field_name(name, index)}"
        self.kind, self.read, self.field, self.boolean, self.choices = "django", None, None, False, None
        self.icons = _Icons()
        try:
            field = _get_non_gfk_field(cl.lookup_opts, name)
        except (FieldDoesNotExist, FieldIsAForeignKeyColumnName):
            field = None
        if field is None:
            self._callable(cl.model_admin, name)
        elif not field.auto_created:
            self._field(field)

    def _callable(self, model_admin, name) -> None:
        """A callable or a method of the admin: the value is what it returns (`lookup_field`'s first branches)."""
        if callable(name):
            attr = name
        elif isinstance(name, str) and name != "__str__" and hasattr(model_admin, name):
            attr = getattr(model_admin, name)
        else:
            return  # an attribute or property of the object: Django's code
        if name == "action_checkbox":
            self.kind, self.classes = "checkbox", "action-checkbox"
            return
        self.kind, self.read = "value", attr
        self.boolean = getattr(attr, "boolean", False)
        self.empty = getattr(attr, "empty_value_display", self.empty)

    def _field(self, field) -> None:
        self.field = field
        if isinstance(field, (models.DateField, models.TimeField, models.ForeignKey)):
            self.classes += " nowrap"
        if isinstance(field.remote_field, models.ManyToOneRel):
            self.kind = "related"
        elif getattr(field, "flatchoices", None):
            self.kind, self.choices = "choices", dict(field.flatchoices)
        elif isinstance(field, models.BooleanField):
            self.kind, self.boolean = "value", True  # the value's icon, whatever the field's empty values
        elif type(field) in (models.CharField, models.TextField):
            self.kind = "text"  # plain text: written as it is, or the empty-value mark
        else:
            self.kind = "field"

    def text(self, result):
        """The cell's content and classes, as `items_for_result` works them out."""
        classes = self.classes
        if self.kind == "related":
            value = getattr(result, self.field.name)
            return (self.empty if value is None else value), classes
        attname = self.field.attname if self.field is not None else None
        value = getattr(result, attname) if attname else self.read(result)
        if isinstance(value, str) and value.strip() == "":
            value = ""
        if value.__class__ is str and (self.kind == "text" or (self.kind == "value" and not self.boolean)):
            return (value or self.empty), classes  # "" is an empty value to both of Django's display functions
        if self.kind == "value":
            if self.boolean and (value is True or value is False or value is None):
                return self.icons[value], classes
            if isinstance(value, (datetime.date, datetime.time)):
                classes += " nowrap"
            return display_for_value(value, self.empty, self.boolean), classes
        if self.kind == "choices":
            try:
                return self.choices.get(value, self.empty), classes
            except TypeError:  # a value that cannot be looked up (a list): Django's own way
                pass
        return display_for_field(value, self.field, self.empty, avoid_link=self.link), classes


class RowWriter:
    """Writes the rows of one page of a change list (`cl`), each as one string of cells."""

    def __init__(self, cl):
        self.cl = cl
        self.fallback = bool(cl.is_popup or cl.formset is not None or cl.to_field or cl.list_display_links is None)
        links = cl.list_display_links
        self.columns = []
        for index, name in enumerate(cl.list_display):
            is_link = (not links and not self.columns) if not links else name in links
            self.columns.append(Column(self, index, name, is_link))
        # Only the first linked column is the row's header cell (as in Django's code).
        linked = [c for c in self.columns if c.link]
        self.header = linked[0] if linked else None
        self.url_parts = self._url_parts()
        self.checkbox_parts = self._checkbox_parts() if any(c.kind == "checkbox" for c in self.columns) else None

    def _url_parts(self):
        """The escaped change-page address around its primary key, with the list's filters to return to."""
        try:
            url = self.cl.url_for_result(_Marked(self.cl.pk_attname))
        except NoReverseMatch:
            return None
        url = add_preserved_filters({"preserved_filters": self.cl.preserved_filters, "opts": self.cl.opts}, url)
        # The key's marker in the path comes before any query (which may hold the same text, typed by a user).
        parts = str(conditional_escape(url)).split(KEY_MARK, 1)
        return parts if len(parts) == 2 else None

    def _checkbox_parts(self):
        """The row checkbox as `ModelAdmin.action_checkbox` renders it, cut around its key and its label:
        (before, between, after, whether the key comes first)."""
        attrs = {
            "class": "action-select",
            "aria-label": format_html(gettext("Select this object for an action - {}"), LABEL_MARK),
        }
        html = forms.CheckboxInput(attrs, lambda value: False).render(helpers.ACTION_CHECKBOX_NAME, KEY_MARK)
        if html.count(KEY_MARK) != 1 or html.count(LABEL_MARK) != 1:
            return None
        key_first = html.index(KEY_MARK) < html.index(LABEL_MARK)
        first, second = (KEY_MARK, LABEL_MARK) if key_first else (LABEL_MARK, KEY_MARK)
        before, rest = html.split(first)
        between, after = rest.split(second)
        return before, between, after, key_first

    def cell(self, column: Column, result) -> str:
        if column.kind == "checkbox":
            before, between, after, key_first = self.checkbox_parts
            key, label = escape(str(result.pk)), escape(str(result))
            first, second = (key, label) if key_first else (label, key)
            return f'<td class="{column.classes}">{before}{first}{between}{second}{after}</td>'
        try:
            text, classes = column.text(result)
        except ObjectDoesNotExist:  # Django's code: the admin's empty-value mark, the column's own class only
            text, classes = column.admin_empty, column.own_class
        text = conditional_escape(text)
        if not column.link:
            return f'<td class="{classes}">{text}</td>'
        tag = "th" if column is self.header else "td"
        if self.url_parts is None:
            return f'<{tag} class="{classes}">{text}</{tag}>'
        key = escape(quote(str(getattr(result, self.cl.pk_attname))))
        return f'<{tag} class="{classes}"><a href="{key.join(self.url_parts)}">{text}</a></{tag}>'

    def row(self, result) -> SafeString:
        django_cells = None
        cells = []
        for index, column in enumerate(self.columns):
            if column.kind == "django" or (column.kind == "checkbox" and self.checkbox_parts is None):
                if django_cells is None:  # a column read per object: Django's code writes this row's cells
                    django_cells = list(items_for_result(self.cl, result, None))
                cells.append(django_cells[index])
            else:
                cells.append(self.cell(column, result))
        return mark_safe("".join(cells))  # noqa: S308 (each cell escaped above or by Django)

    def rows(self) -> list[list[SafeString]]:
        """Each row as a list of one string (the template joins a row's items); Django's own rows for a fallback."""
        if self.fallback:
            return list(results(self.cl))  # with each editable row's form
        return [[self.row(r)] for r in self.cl.result_list]


class _Marked:
    """An object whose primary key is the marker, to build the change page's address once."""

    def __init__(self, attname: str):
        setattr(self, attname, KEY_MARK)
