"""Base classes for every admin page: site scoping, permissions by membership, and saving through services.

`ScopedAdmin` narrows lists, detail pages, history pages and foreign-key choices to the user's sites.
Its form runs the model admin's `service_save` as the last step of validation, inside a savepoint, so a
rule refused by a service appears beside the field it names and nothing is saved.
`ScopedReadOnlyInlineMixin` shows a read-only inline to whoever may see the parent object.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.exceptions import NON_FIELD_ERRORS, FieldDoesNotExist, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.urls import reverse
from django.utils.functional import cached_property, lazy
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from core.forms import PlainTextFormMixin
from core.spreadsheets import SpreadsheetSafeWriter
from registry.constants import WRITE_ROLES


def _site_id_of(obj) -> int | None:
    """Follow the model's SITE_LOOKUP ("site", "patient__site", "pk") from an instance to a site id."""
    lookup = getattr(type(obj), "SITE_LOOKUP", None)
    if lookup is None:
        return None
    if lookup == "pk":
        return obj.pk
    *path, last = lookup.split("__")
    target = obj
    for step in path:
        target = getattr(target, step, None)
        if target is None:
            return None
    return getattr(target, f"{last}_id", None)


class ServiceModelForm(PlainTextFormMixin, forms.ModelForm):
    """A model form whose validation ends with the service that saves the object. Text that may not start like
    a spreadsheet formula keeps a leading tab or carriage return, for the service to refuse."""

    reason = forms.CharField(
        required=False,
        label=_("Reason for change"),
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Required when changing recorded clinical data; kept in the audit trail."),
    )
    service_save = None  # set by ScopedAdmin.get_form
    # When a field cannot be read, still run the service's checks on the rest (and keep nothing), so that
    # every error shows in one pass. Only for forms whose service leaves the form's instance untouched.
    check_the_rest = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            if isinstance(field, forms.DateField):
                field.error_messages["invalid"] = _("Write the date year first: 2026-10-01 (or 2026/10/01).")

    def _post_clean(self):
        super()._post_clean()
        if self.service_save is None:
            return
        change = not self.instance._state.adding
        if self.errors:
            if self.check_the_rest:
                self._check_the_rest(change)
            return
        try:
            with transaction.atomic():
                self.instance = self.service_save(self.instance, self.cleaned_data, change)
        except ValidationError as exc:
            self._add_service_errors(exc)

    def _check_the_rest(self, change: bool) -> None:
        unread = set(self.errors)
        try:
            with transaction.atomic():
                self.service_save(self.instance, self.cleaned_data, change)
                transaction.set_rollback(True)
        except ValidationError as exc:
            self._add_service_errors(exc, skip=unread)

    def service_error_field(self, key: str) -> str | None:
        """The form field beside which a service error keyed `key` is shown (None: at the top of the form)."""
        return key if key in self.fields else None

    def _add_service_errors(self, exc: ValidationError, skip: set[str] = frozenset()) -> None:
        """Each service error at its field; `skip`: fields that already show why they could not be read."""
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc)
            return
        for key, errors in exc.error_dict.items():
            field = None if key == NON_FIELD_ERRORS else self.service_error_field(key)
            if field in skip:
                continue
            if field is not None or key == NON_FIELD_ERRORS:
                self.add_error(field, errors)
                continue
            # Name what the message is about, unless the message already does: by the field's label, in the
            # reader's language, when the key is a field of the model the form does not show.
            label = key.replace("_", " ")
            try:
                shown = str(self._meta.model._meta.get_field(key).verbose_name)
            except (AttributeError, FieldDoesNotExist):
                shown = label
            self.add_error(
                None,
                [
                    message if message.startswith((f"{key}:", f"{label}:", f"{shown}:")) else f"{shown}: {message}"
                    for error in errors
                    for message in error.messages
                ],
            )


def request_memo(request, key, compute):
    """`compute()` once per request and key: a page asks the same permission of the same object many times
    (the form, each inline, the buttons), and the answer does not change while the page is drawn."""
    memo = request.__dict__.setdefault("_registry_permission_memo", {})
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def request_memberships(request) -> tuple[tuple[int, str], ...]:
    """The (site id, role) of each membership of the request's user, read once per request (none for an
    inactive user): every admin page asks, for each app in its menu and each object it shows, whether the user
    belongs to a site, may write, reaches an object's site or is a data manager."""
    from registry.models import Membership

    def read():
        user = request.user
        if not (user.is_authenticated and user.is_active):
            return ()
        return tuple(Membership.objects.filter(user_id=user.pk).values_list("site_id", "role"))

    return request_memo(request, ("memberships",), read)


def is_data_manager(request) -> bool:
    """Whether the request's user is a data manager of any site (from `request_memberships`)."""
    from registry.constants import Role

    return any(role == Role.DATA_MANAGER for _, role in request_memberships(request))


class ScopedRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """A list filter on a related site, study, patient...: its choices narrowed to the user's sites, as the list
    is (Django's offers every row of the related table: another hospital's name to a coordinator)."""

    def field_choices(self, field, request, model_admin):
        related = field.related_model._default_manager.all()
        if not hasattr(related, "for_user"):
            return super().field_choices(field, request, model_admin)
        ordering = self.field_admin_ordering(field, request, model_admin)
        related = related.for_user(request.user)
        return [(row.pk, str(row)) for row in (related.order_by(*ordering) if ordering else related)]

    def has_output(self):
        # With a single choice Django leaves the filter out, and a value asked for in the address with it (another
        # site's id): shown when asked for, so that it still narrows the list.
        return super().has_output() or bool(self.used_parameters)


def scoped_list_filter(model, item):
    """`item` of a list_filter, a filter on a relation given by its path made a `ScopedRelatedFieldListFilter`."""
    from django.contrib.admin.utils import get_fields_from_path

    if not isinstance(item, str):
        return item
    try:
        field = get_fields_from_path(model, item)[-1]
    except (FieldDoesNotExist, admin.utils.NotRelationField):
        return item
    if field.is_relation and (field.many_to_one or field.one_to_one):
        return (item, ScopedRelatedFieldListFilter)
    return item


class SiteScopedAdminMixin:
    """Lists, detail pages, foreign-key choices and list filters narrowed to the user's sites; permissions by
    membership."""

    superuser_writes_only = False  # reference data (sites, studies, memberships) is kept by superusers

    # Scoping --------------------------------------------------------------------------------------------

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs.for_user(request.user) if hasattr(qs, "for_user") else qs

    def get_list_filter(self, request):
        return [scoped_list_filter(self.model, item) for item in super().get_list_filter(request)]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        qs = kwargs.get("queryset") or db_field.related_model._default_manager.all()
        if hasattr(qs, "for_user"):
            kwargs["queryset"] = qs.for_user(request.user, write=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    # Permissions follow memberships rather than Django's per-model permissions -----------------------------

    def _is_member(self, request, *, write: bool = False) -> bool:
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        if user.is_superuser:
            return True
        return any(not write or role in WRITE_ROLES for _, role in request_memberships(request))

    def _can_reach(self, request, obj, *, write: bool) -> bool:
        if request.user.is_superuser:
            return True
        site_id = _site_id_of(obj)
        if site_id is None:
            return False
        return any(
            site == site_id and (not write or role in WRITE_ROLES) for site, role in request_memberships(request)
        )

    def has_module_permission(self, request):
        return self._is_member(request)

    def has_view_permission(self, request, obj=None):
        if obj is None:
            return self._is_member(request)
        if not self._is_member(request):
            return False
        # What a user may see is what the scoped queryset shows (e.g. a lot is seen by every site of its study).
        qs = self.model._default_manager.all()
        if hasattr(qs, "for_user"):
            return request_memo(
                request,
                ("view", self.model._meta.label, obj.pk),
                lambda: qs.for_user(request.user).filter(pk=obj.pk).exists(),
            )
        return self._can_reach(request, obj, write=False)

    def has_add_permission(self, request):
        if self.superuser_writes_only:
            return request.user.is_active and request.user.is_superuser
        return self._is_member(request, write=True)

    def has_change_permission(self, request, obj=None):
        if self.superuser_writes_only:
            return request.user.is_active and request.user.is_superuser
        if obj is None:
            return self._is_member(request, write=True)
        return self._is_member(request, write=True) and self._can_reach(request, obj, write=True)

    def has_delete_permission(self, request, obj=None):
        # Clinical records are corrected with a reason, never deleted from the admin.
        return False


class StudyPageAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    """A study list whose study opens a page of its own (the cohort report, the import): no adding or
    changing studies here; a study outside the user's sites is refused."""

    list_display = ["code", "registration_id", "title", "status"]
    search_fields = ["code", "registration_id", "title"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def study_or_refuse(self, request, object_id):
        study = self.get_object(request, object_id)
        if study is None or not self.has_view_permission(request, study):
            raise PermissionDenied
        return study


class ScopedReadOnlyInlineMixin:
    """A read-only inline seen by whoever may see its parent object, as the parent's admin decides.

    Django would ask for the inline model's own view permission, which coordinators do not hold: their
    rights come from memberships of sites.
    """

    can_delete = False

    def _parent_admin(self):
        try:
            return self.admin_site.get_model_admin(self.parent_model)
        except NotRegistered:
            return None

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs.for_user(request.user) if hasattr(qs, "for_user") else qs

    def has_view_permission(self, request, obj=None):
        parent_admin = self._parent_admin()
        if parent_admin is None:
            return super().has_view_permission(request, obj)
        return parent_admin.has_view_permission(request, obj)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class BoundedCountPaginator(Paginator):
    """A paginator for lists over big tables: it counts the rows only as far as the page asked for plus ten
    more pages (`SELECT count(*) FROM (... LIMIT n)`), so a list of millions of rows costs what its first
    pages cost. `capped` says the list goes on beyond the count; the pagination shows "more than"."""

    PAGES_AHEAD = 10

    def __init__(self, object_list, per_page, *, page_number: int = 1, **kwargs):
        super().__init__(object_list, per_page, **kwargs)
        self.limit = (max(page_number, 1) + self.PAGES_AHEAD) * per_page + 1
        self.capped = False

    @cached_property
    def count(self) -> int:
        counted = self.object_list.order_by()[: self.limit].count()
        self.capped = counted >= self.limit
        return min(counted, self.limit - 1)


class BigListChangeList(ChangeList):
    """Each row's link built from one `reverse()` of the change page's URL, not one per row (a hundred rows
    took about 5 ms of the page's CPU)."""

    @cached_property
    def _change_url_parts(self) -> list[str]:
        name = f"admin:{self.opts.app_label}_{self.opts.model_name}_change"
        return reverse(name, args=("__pk__",), current_app=self.model_admin.admin_site.name).split("__pk__")

    def url_for_result(self, result) -> str:
        return quote(str(getattr(result, self.pk_attname))).join(self._change_url_parts)


def date_column(model, name: str):
    """A list column of a date field written as the registry writes dates (2026-10-01, config/formats), read
    from the value directly: Django's per-cell localisation took about a tenth of a big list's CPU."""
    # The header is read when the page is drawn: core/i18n.py makes field names translatable once the apps
    # are ready, after the admin modules were imported.
    header = lazy(lambda: str(model._meta.get_field(name).verbose_name), str)()

    @admin.display(description=header, ordering=name)
    def column(obj):
        value = getattr(obj, name)
        return value.isoformat() if value is not None else None  # None: the admin's empty-value mark

    column.__name__ = name  # the cells keep their `field-<name>` class
    return column


class BigListAdminMixin:
    """A list over a big table (visits, results, outcomes): no count of every row, neither of the filtered
    list (`BoundedCountPaginator`) nor of the whole table (`show_full_result_count`); row links from one
    `reverse()` (`BigListChangeList`); rows written by `registry.admin_rows.RowWriter`."""

    show_full_result_count = False
    paginator = BoundedCountPaginator
    change_list_template = "admin/big_change_list.html"

    def get_changelist(self, request, **kwargs):
        return BigListChangeList

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        try:
            page_number = int(request.GET.get(PAGE_VAR, 1))
        except ValueError:
            page_number = 1
        return self.paginator(
            queryset, per_page, page_number=page_number, orphans=orphans, allow_empty_first_page=allow_empty_first_page
        )


class ScopedAdmin(SiteScopedAdminMixin, SimpleHistoryAdmin):
    """An admin page scoped to the user's sites, with history. Writes go through `service_save`."""

    form = ServiceModelForm
    reason_on_change = True

    # Saving through services ------------------------------------------------------------------------------

    def get_fields(self, request, obj=None):
        fields = [f for f in super().get_fields(request, obj) if f != "reason"]
        # A page the user may only read has nothing to change, so no reason for a change (read-only, it would
        # show as an empty "Reason: None").
        if obj is not None and self.reason_on_change and self.has_change_permission(request, obj):
            fields.append("reason")
        return fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        model_admin = self

        def service_save(self, instance, cleaned_data, change):
            return model_admin.service_save(request, instance, cleaned_data, change)

        return type(form.__name__, (form,), {"service_save": service_save})

    def service_save(self, request, instance, cleaned_data, change):
        """Save `instance` through the app's service; raise ValidationError to refuse. Override per model."""
        from registry.services import save_validated

        return save_validated(instance, reason=cleaned_data.get("reason", ""))

    def save_model(self, request, obj, form, change):
        # The form's validation already saved the object through its service.
        pass


def export_csv_action(modeladmin, request, queryset):
    """Download what the list shows (its columns, the selected rows) as CSV."""
    from django.http import HttpResponse

    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{modeladmin.model._meta.model_name}.csv"'
    writer = SpreadsheetSafeWriter(response)
    columns = [c for c in modeladmin.get_list_display(request) if c != "action_checkbox"]
    writer.writerow(columns)
    for obj in queryset:
        row = []
        for name in columns:
            attr = getattr(modeladmin, name, None)
            value = attr(obj) if callable(attr) else getattr(obj, name, "")
            if hasattr(obj, f"get_{name}_display"):
                value = getattr(obj, f"get_{name}_display")()
            row.append("" if value is None else str(value))
        writer.writerow(row)
    return response


export_csv_action.short_description = "Export the selected rows as CSV"
