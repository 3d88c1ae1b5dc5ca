"""The queries in the admin: the Queries list and a query's page with its thread and the answer, close and
re-open controls; a "Raise query" page reached from the visit, result, adverse event, medication, infusion
and patient pages; and on those pages, a panel of the record's queries and a mark on each field that has an
open one. Every step goes through `quality.services.queries`, which decides who may take it."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from followup.models import AdverseEvent, Result, Visit
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from quality import constants as c
from quality.checks.rules import RULES, question
from quality.models import Query
from quality.selectors import record_queries
from quality.services import queries as services
from registry.admin_tools import SiteScopedAdminMixin, request_memberships


def _errors(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return " ".join(f"{m}" for messages_ in exc.message_dict.values() for m in messages_)
    return " ".join(exc.messages)


class QueryAgeFilter(admin.SimpleListFilter):
    title = _("age")
    parameter_name = "age"

    def lookups(self, request, model_admin):
        return [("7", _("open more than 7 days")), ("30", _("open more than 30 days"))]

    def queryset(self, request, queryset):
        if self.value() in ("7", "30"):
            since = timezone.now() - dt.timedelta(days=int(self.value()))
            return queryset.filter(created_at__lt=since).exclude(state=c.QueryState.CLOSED)
        return queryset


class QueryRuleFilter(admin.SimpleListFilter):
    title = _("edit check")
    parameter_name = "rule"

    def lookups(self, request, model_admin):
        return [("-", _("raised by hand")), *((code, rule.label) for code, rule in RULES.items())]

    def queryset(self, request, queryset):
        if self.value() == "-":
            return queryset.filter(rule="")
        if self.value():
            return queryset.filter(rule=self.value())
        return queryset


class QueryActionForm(forms.Form):
    text = forms.CharField(
        label=_("Message"), required=False, widget=forms.Textarea(attrs={"rows": 3}), max_length=services.MAX_TEXT
    )


class RaiseQueryForm(forms.Form):
    field = forms.ChoiceField(label=_("Field or item"), required=False)
    text = forms.CharField(label=_("Question"), widget=forms.Textarea(attrs={"rows": 3}), max_length=500)


@admin.register(Query)
class QueryAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    list_display = ["number", "patient", "record", "field", "rule_label", "state", "age", "raised_at"]
    list_filter = ["state", "patient__site", QueryAgeFilter, QueryRuleFilter, "study"]
    search_fields = ["patient__subject_code", "text"]
    list_select_related = ["patient", "content_type"]
    fields = ["patient", "record", "field", "rule_label", "question", "state", "age", "raised_at", "raised_by"]
    readonly_fields = fields
    change_form_template = "admin/quality/query/change_form.html"

    # Only the services change a query, through the controls of its page.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("query"), ordering="pk")
    def number(self, obj):
        return f"#{obj.pk}"

    @admin.display(description=_("record"))
    def record(self, obj):
        url = record_url(obj.content_type.model_class(), obj.object_id)
        label = f"{obj.content_type.model_class()._meta.verbose_name} {obj.object_id}"
        return format_html('<a href="{}">{}</a>', url, label) if url else label

    @admin.display(description=_("edit check"))
    def rule_label(self, obj):
        return RULES[obj.rule].label if obj.rule in RULES else "—"

    @admin.display(description=_("question"))
    def question(self, obj):
        return question(obj.rule, obj.detail) if obj.rule else obj.text

    @admin.display(description=_("raised at"), ordering="created_at")
    def raised_at(self, obj):
        return obj.created_at

    @admin.display(description=_("age (days)"))
    def age(self, obj):
        return (timezone.now() - obj.created_at).days

    def get_urls(self):
        urls = [
            path("raise/<str:record_type>/<int:object_id>/", self.admin_site.admin_view(self.raise_view), name="quality_query_raise"),
            path("<int:query_id>/act/", self.admin_site.admin_view(self.act_view), name="quality_query_act"),
        ]  # fmt: skip
        return urls + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        query = self.get_object(request, object_id)
        extra = {}
        if query is not None:
            site_id = query.patient.site_id
            user = request.user
            extra = {
                "thread": [
                    {"message": m, "text": services.message_text(m)}
                    for m in query.messages.all()
                ],
                "can_answer": query.state == c.QueryState.OPEN and services.can_act(user, site_id, c.ANSWER_ROLES),
                "can_close": query.state != c.QueryState.CLOSED and services.can_act(user, site_id, c.CLOSE_ROLES),
                "can_reopen": query.state != c.QueryState.OPEN and services.can_act(user, site_id, c.CLOSE_ROLES),
                "act_url": reverse("admin:quality_query_act", args=[query.pk]),
                "action_form": QueryActionForm(),
            }  # fmt: skip
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def act_view(self, request, query_id):
        query = self.get_object(request, str(query_id))
        if query is None or request.method != "POST":
            raise Http404
        form = QueryActionForm(request.POST)
        action = request.POST.get("action")
        steps = {
            "answer": lambda text: services.query_answer(query=query, text=text, actor=request.user),
            "close": lambda text: services.query_close(query=query, text=text, actor=request.user),
            "reopen": lambda text: services.query_reopen(query=query, text=text, actor=request.user),
        }
        done = {
            "answer": _("The query is answered."),
            "close": _("The query is closed."),
            "reopen": _("The query is re-opened."),
        }
        if action not in steps:
            messages.error(request, gettext("Choose to answer, close or re-open the query."))
        elif not form.is_valid():
            messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
        else:
            try:
                steps[action](form.cleaned_data["text"])
            except ValidationError as exc:
                messages.error(request, _errors(exc))
            else:
                messages.success(request, done[action])
        return HttpResponseRedirect(reverse("admin:quality_query_change", args=[query.pk]))

    def raise_view(self, request, record_type, object_id):
        model = services.RECORD_TYPES.get(record_type)
        if model is None:
            raise Http404
        target = get_object_or_404(model.objects.for_user(request.user), pk=object_id)
        form = RaiseQueryForm(request.POST or None, initial={"field": request.GET.get("field", "")})
        form.fields["field"].choices = [("", gettext("(the whole record)")), *services.field_choices(target)]
        if request.method == "POST" and form.is_valid():
            try:
                query = services.query_raise(
                    target=target, field=form.cleaned_data["field"], text=form.cleaned_data["text"], actor=request.user
                )
            except ValidationError as exc:
                messages.error(request, _errors(exc))
            else:
                messages.success(request, gettext("Query #%(n)s raised.") % {"n": query.pk})
                back = request.GET.get("next", "")
                if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
                    back = record_url(model, object_id) or reverse("admin:quality_query_changelist")
                return HttpResponseRedirect(back)
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Raise a query"),
            "target": target,
            "record_label": f"{model._meta.verbose_name} {target}",
            "form": form,
            "opts": self.model._meta,
            "back_url": request.GET.get("next")
            if url_has_allowed_host_and_scheme(request.GET.get("next", ""), allowed_hosts={request.get_host()})
            else record_url(model, object_id),
            "current_value": services.value_of(target, form["field"].value() or ""),
        }
        return TemplateResponse(request, "admin/quality/query/raise.html", context)


def record_url(model, object_id) -> str:
    try:
        return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[object_id])
    except Exception:  # noqa: BLE001 - a record kind without an admin page has no link
        return ""


# The record pages: a panel of their queries and a mark on each queried field ---------------------------


class QueryMarksMixin:
    """Added to a record's admin page: its queries (open first), a "Raise query" link for the record, for each
    of its fields a monitor may question (the visit's results one by one), and a mark on fields with open
    queries (`quality/query_marks.js` reads `query_marks`)."""

    quality_record_type = ""

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["quality_base_template"] = self.quality_base_template
        if change and obj is not None:
            context["query_panel"] = record_queries(
                obj,
                self.quality_record_type,
                user=request.user,
                record_url=record_url,
                memberships=request_memberships(request),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)


def _with_query_marks(model, record_type: str) -> None:
    """Register `model`'s admin again as itself plus `QueryMarksMixin` (whatever admin class it has now)."""
    current = admin.site.get_model_admin(model)
    base = type(current)
    attrs = {
        "quality_record_type": record_type,
        "quality_base_template": base.change_form_template or "admin/change_form.html",
        "change_form_template": "admin/quality/marked_change_form.html",
        "__module__": base.__module__,
    }
    admin.site.unregister(model)
    admin.site.register(model, type(base.__name__, (QueryMarksMixin, base), attrs))


for _model, _type in [
    (Visit, "visit"),
    (Result, "result"),
    (AdverseEvent, "adverse_event"),
    (ConcomitantMedication, "medication"),
    (TransplantEvent, "transplant"),
    (Patient, "patient"),
]:
    _with_query_marks(_model, _type)
