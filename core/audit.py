"""The audit trail: who changed clinical data, when, what, through which door, and why.

Every clinical model carries `history = audit_history()`. The history row records the actor and the
door (admin, API, command, system) from the current audit context, which the admin middleware, the API
authentication and management commands set. On PostgreSQL the history tables are append-only: a trigger
refuses UPDATE and DELETE on them (installed after every migrate).
"""

from __future__ import annotations

import contextvars
import os
from dataclasses import dataclass

from django.db import connection, models
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords
from simple_history.signals import pre_create_historical_record


class Door(models.TextChoices):
    """Through which door a change came. The labels translate wherever they are shown, the history models' own
    fields included (core/i18n.py translates only the labels of the project's models)."""

    ADMIN = "admin", _("Admin")
    API = "api", _("API key")
    COMMAND = "command", _("Management command")
    IMPORT = "import", _("Spreadsheet import")
    SYSTEM = "system", _("System (task or shell)")


@dataclass(frozen=True)
class AuditContext:
    door: str
    actor: str = ""
    user_id: int | None = None


# The process default: manage.py marks its commands (REGISTRY_AUDIT_DOOR=command); a web request or an
# API call sets its own context; anything else (a Celery task) is the system.
_context: contextvars.ContextVar[AuditContext] = contextvars.ContextVar(
    "audit_context",
    default=AuditContext(  # noqa: B039 (a frozen dataclass)
        door=os.environ.get("REGISTRY_AUDIT_DOOR", Door.SYSTEM), actor=os.environ.get("REGISTRY_AUDIT_ACTOR", "")
    ),
)


class AuditScope:
    """A block in which history rows are attributed to `context`; leaving it restores the context before.

    Only leaving the block restores anything: a block entered and never left (a view that failed before
    closing it) is ended by the request around it (`AuditDoorMiddleware`), never later by the garbage
    collector, which would restore an old attribution in the middle of whatever runs at that moment.
    """

    def __init__(self, context: AuditContext):
        self.context = context
        self._token: contextvars.Token | None = None

    def __enter__(self) -> AuditContext:
        if self._token is not None:
            raise RuntimeError("this audit context is already entered")
        self._token = _context.set(self.context)
        return self.context

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        token, self._token = self._token, None
        if token is not None:
            _context.reset(token)


def audit_context(*, door: str, actor: str = "", user=None) -> AuditScope:
    """Attribute every history row written inside the block to `door` and `actor` (or `user`)."""
    if user is not None and not actor:
        actor = user.get_username()
    return AuditScope(AuditContext(door=door, actor=actor, user_id=getattr(user, "pk", None)))


def current_audit_context() -> AuditContext:
    return _context.get()


class AuditedHistory(models.Model):
    """Extra columns of every history table: the door and a readable actor, beside simple-history's own."""

    history_door = models.CharField(max_length=16, choices=Door.choices, default=Door.SYSTEM)
    history_actor = models.CharField(max_length=150, blank=True)

    class Meta:
        abstract = True


def audit_history(**kwargs) -> HistoricalRecords:
    """The history descriptor for a clinical model (user kept by id, so removing a user rewrites nothing).
    A history row is looked up by the object (`id`, its foreign keys), the date and the user, never by its copy
    of `updated_at`, so that column is not indexed there: one index fewer to write for every change."""
    kwargs.setdefault("no_db_index", ["updated_at"])
    return HistoricalRecords(
        bases=[AuditedHistory],
        history_user_id_field=models.IntegerField(null=True, blank=True, db_index=True),
        **kwargs,
    )


def _stamp_history_row(sender, history_instance, **kwargs):
    ctx = current_audit_context()
    history_instance.history_door = ctx.door
    history_instance.history_actor = ctx.actor
    if history_instance.history_user_id is None and ctx.user_id is not None:
        history_instance.history_user_id = ctx.user_id


pre_create_historical_record.connect(_stamp_history_row, dispatch_uid="core.audit.stamp")


class AuditDoorMiddleware:
    """Requests to the admin are attributed to the admin door and the logged-in user.

    Every request is one audit block: whatever it sets (an API key's attribution) ends with it, even when a
    view fails before leaving its own block, so nothing after the request is attributed to it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if request.path.startswith("/admin/") and user is not None and user.is_authenticated:
            scope = audit_context(door=Door.ADMIN, user=user)
        else:
            scope = AuditScope(current_audit_context())
        with scope:
            return self.get_response(request)


APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION registry_history_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit history table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def history_tables() -> list[str]:
    from django.apps import apps

    return sorted(
        model._meta.db_table
        for model in apps.get_models()
        if model.__name__.startswith("Historical") and hasattr(model, "history_door")
    )


def install_append_only_triggers(**kwargs) -> None:
    """Make every history table refuse UPDATE and DELETE (PostgreSQL only; idempotent)."""
    if connection.vendor != "postgresql":
        return
    existing = set(connection.introspection.table_names())
    with connection.cursor() as cursor:
        cursor.execute(APPEND_ONLY_FUNCTION)
        for table in history_tables():
            if table not in existing:
                continue
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"DROP TRIGGER IF EXISTS registry_append_only ON {quoted}")
            cursor.execute(
                f"CREATE TRIGGER registry_append_only BEFORE UPDATE OR DELETE ON {quoted} "
                "FOR EACH ROW EXECUTE FUNCTION registry_history_append_only()"
            )


def _history_attrs() -> dict:
    ctx = current_audit_context()
    attrs = {"history_door": ctx.door, "history_actor": ctx.actor}
    if ctx.user_id is not None:
        attrs["history_user_id"] = ctx.user_id
    return attrs


def bulk_create_audited(model, objs: list, *, reason: str = "") -> list:
    """`bulk_create` that also writes the history rows, stamped like any other change."""
    from core.bulk import insert_rows

    insert_rows(model, objs)
    history_bulk_create(model, objs, reason=reason)
    return objs


_history_models: dict = {}


def history_bulk_create(model, objs: list, *, update: bool = False, date=None, reason: str = "") -> None:
    """History rows for rows already written in bulk (created, or changed when `update`), in a fixed number of
    statements, stamped like any other change; each object's `_change_reason`, when set, is its row's reason,
    else `reason`."""
    tracked = _tracked_names(model)
    history_values(
        model,
        tracked,
        [tuple(getattr(obj, name) for name in tracked) for obj in objs],
        reasons=[getattr(obj, "_change_reason", "") or reason for obj in objs],
        update=update,
        date=date,
    )


def history_values(
    model, field_names, rows: list[tuple], *, reasons: list[str], update: bool = False, date=None
) -> None:
    """`history_bulk_create` for rows given as tuples of the model's tracked fields (by attribute name, in the
    order of `field_names`, the primary key among them), with one reason per row."""
    from django.utils import timezone

    from core.bulk import insert_values

    if not rows:
        return
    history = _history_model(model)
    if sorted(field_names) != sorted(_tracked_names(model)):
        raise ValueError(f"History rows of {model.__name__} need exactly the fields {_tracked_names(model)}.")
    attrs, date = _history_attrs(), date or timezone.now()
    names = ["history_date", "history_type", "history_change_reason", *attrs, *field_names]
    stamp = (date, "~" if update else "+")
    extra = tuple(attrs.values())
    insert_values(
        history,
        names,
        [(*stamp, reason, *extra, *row) for row, reason in zip(rows, reasons, strict=True)],
    )


def history_of_rows(model, pks: list, *, reasons: list[str], update: bool = False, date=None) -> None:
    """History rows of rows as they now are in the database, named by primary key (one reason each). On
    PostgreSQL they are copied inside the database by one INSERT ... SELECT: nothing travels back and forth."""
    from django.db import connection
    from django.utils import timezone

    if not pks:
        return
    if connection.vendor != "postgresql":
        tracked = _tracked_names(model)
        found = {row[0]: row for row in model._base_manager.filter(pk__in=pks).values_list("pk", *tracked)}
        rows = [found[pk][1:] for pk in pks]
        history_values(model, tracked, rows, reasons=reasons, update=update, date=date)
        return
    history = _history_model(model)
    quote = connection.ops.quote_name
    attrs = _history_attrs()
    stamps = ["history_date", "history_type", *attrs]
    live = [field.column for field in history.tracked_fields]
    names = [history._meta.get_field(name).column for name in stamps]
    names += ["history_change_reason", *(history._meta.get_field(f.name).column for f in history.tracked_fields)]
    values = ", ".join(["%s"] * len(stamps))
    pk = quote(model._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(history._meta.db_table)} ({', '.join(quote(n) for n in names)}) "
            f"SELECT {values}, r.reason, {', '.join(f't.{quote(c)}' for c in live)} "
            f"FROM unnest(%s::bigint[], %s::text[]) AS r(id, reason) JOIN {quote(model._meta.db_table)} t ON t.{pk} = r.id",
            [date or timezone.now(), "~" if update else "+", *attrs.values(), list(pks), list(reasons)],
        )


def _history_model(model):
    from simple_history.utils import get_history_model_for_model

    return _history_models.get(model) or _history_models.setdefault(model, get_history_model_for_model(model))


def _tracked_names(model) -> list[str]:
    return [field.attname for field in _history_model(model).tracked_fields]
