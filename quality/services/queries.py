"""Queries: raising one on a record, answering, closing and re-opening it, each with its message in the thread.

Every rule is here, for every door (admin, partner API, edit checks, commands): who may do what (monitors and
data managers raise, close and re-open; coordinators, investigators and data managers answer; all only at
their own sites), which state each step starts from, and what the thread records (who, when, the door, the
text, the value of the queried field or item at that moment).
"""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext as _

from core.audit import current_audit_context
from followup.catalogue import ANALYTES, SLEDAI_ITEMS
from followup.models import AdverseEvent, Result, Visit
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from quality import constants as c
from quality.models import Query, QueryMessage
from registry.models import ApiKey, Membership

# What a query may be about, and how to reach its patient from there.
TARGETS: dict[type, str] = {
    Visit: "patient",
    Result: "visit__patient",
    AdverseEvent: "patient",
    ConcomitantMedication: "patient",
    TransplantEvent: "patient",
    Patient: "",
}
MAX_TEXT = 2000
# The names partners and pages give each kind of record.
RECORD_TYPES: dict[str, type] = {
    "visit": Visit,
    "result": Result,
    "adverse_event": AdverseEvent,
    "medication": ConcomitantMedication,
    "transplant": TransplantEvent,
    "patient": Patient,
}
RECORD_TYPE_OF_MODEL = {model._meta.model_name: name for name, model in RECORD_TYPES.items()}


def target_patient(target) -> Patient:
    if isinstance(target, Patient):
        return target
    if isinstance(target, Result):
        return target.visit.patient
    return target.patient


def _roles(actor, site_id: int, memberships=None) -> set[str]:
    if actor is None or not getattr(actor, "is_active", False):
        return set()
    if memberships is not None:
        return {role for site, role in memberships if site == site_id}
    return set(Membership.objects.filter(user_id=actor.pk, site_id=site_id).values_list("role", flat=True))


def can_act(actor, site_id: int, roles, *, memberships=None) -> bool:
    """Whether `actor` (a user; a superuser always) holds one of `roles` at the site. `memberships`, the
    user's (site id, role) pairs when the caller has read them already, saves the query."""
    if actor is not None and getattr(actor, "is_superuser", False) and actor.is_active:
        return True
    return bool(_roles(actor, site_id, memberships) & set(roles))


def _require(actor, site_id: int, roles, *, action: str, field: str = "state") -> None:
    if isinstance(actor, ApiKey):  # a partner answers for its own site (the API scopes it) and does nothing else
        if roles is c.ANSWER_ROLES and actor.site_id == site_id and actor.can_write:
            return
        raise ValidationError({field: _("A partner API key can only answer queries of its own site.")})
    if not can_act(actor, site_id, roles):
        messages = {
            "raise": _("Only a monitor or data manager of the patient's site can raise a query."),
            "close": _("Only a monitor or data manager of the patient's site can close a query."),
            "reopen": _("Only a monitor or data manager of the patient's site can re-open a query."),
            "answer": _("Only a coordinator, investigator or data manager of the patient's site can answer a query."),
        }
        raise ValidationError({field: messages[action]})


def _text(text: str, *, required: bool, field: str = "text") -> str:
    text = (text or "").strip()
    if required and not text:
        raise ValidationError({field: _("Write the message: it cannot be empty.")})
    if len(text) > MAX_TEXT:
        raise ValidationError(
            {field: _("The message is %(n)s characters long; at most %(max)s.") % {"n": len(text), "max": MAX_TEXT}}
        )
    if "\x00" in text:
        raise ValidationError({field: _("The message contains a NUL character, which cannot be stored.")})
    return text


def _display(obj, name: str) -> str:
    value = getattr(obj, name, None)
    if value is None:
        return ""
    display = getattr(obj, f"get_{name}_display", None)
    return str(display()) if display else str(value)


def field_choices(target) -> list[tuple[str, str]]:
    """(code, label) of what a query on `target` may name: the visit's result codes and SLEDAI-2K items, or the
    record's editable fields."""
    if isinstance(target, Visit):
        return [
            *((code, gettext(a.label)) for code, a in ANALYTES.items()),
            *((code, f"SLEDAI-2K: {gettext(item.label)}") for code, item in SLEDAI_ITEMS.items()),
            ("sledai_items", gettext("SLEDAI-2K items")),
            ("actual_date", gettext("actual date")),
        ]
    if isinstance(target, Result):
        return [(target.code, gettext(ANALYTES[target.code].label))]
    return [
        (f.name, str(f.verbose_name))
        for f in type(target)._meta.concrete_fields
        if f.editable and not f.primary_key and not f.is_relation
    ]


def check_field(target, field: str) -> str:
    field = (field or "").strip()
    if field and field not in dict(field_choices(target)):
        raise ValidationError(
            {
                "field": _("%(field)s is not a field or item of this %(record)s.")
                % {"field": field, "record": type(target)._meta.verbose_name}
            }
        )
    return field


def value_of(target, field: str = "") -> str:
    """The queried field or item's value now, as people read it ("" when the record is gone)."""
    if target is None:
        return ""
    if isinstance(target, Result):
        return f"{target.shown_value} {ANALYTES[target.code].unit}"
    if isinstance(target, Visit):
        if field in ANALYTES:
            result = Result.objects.filter(visit=target, code=field).first()
            return value_of(result) if result else _("no value")
        if field in SLEDAI_ITEMS:
            return _("ticked") if field in (target.sledai_items or []) else _("not ticked")
        if field == "sledai_items":
            return ", ".join(target.sledai_items or [])
        return _display(target, field or "outcome")
    if not field:
        return str(target)
    try:
        type(target)._meta.get_field(field)
    except FieldDoesNotExist:
        return ""
    return _display(target, field)


# Kept in English, translated when read: closed through the API or by a colleague in another language, the note
# still reads in the reader's language.
CLOSED_NOTE = gettext_noop("Closed.")


def message_text(message: QueryMessage) -> str:
    """A message's text as the reader sees it: the texts the registry wrote itself (an edit check's finding, the
    note of a close without one) in the reader's language, what people wrote as they wrote it."""
    if (message.kind == c.MessageKind.CHECK and not message.author_id) or (
        message.kind == c.MessageKind.CLOSE and message.text == CLOSED_NOTE
    ):
        return gettext(message.text)
    return message.text


def _message(query: Query, kind: str, text: str, actor) -> QueryMessage:
    context = current_audit_context()
    user = actor if getattr(actor, "is_authenticated", False) else None
    return QueryMessage.objects.create(
        query=query,
        kind=kind,
        author=user,
        actor=user.get_username() if user else context.actor,
        door=context.door,
        text=text,
        value=value_of(query.target, query.field)[:300],
    )


@transaction.atomic
def query_raise(*, target, text: str, actor, field: str = "") -> Query:
    """A monitor or data manager asks about `target` (one of TARGETS), optionally one field or item of it."""
    if type(target) not in TARGETS or target.pk is None:
        raise ValidationError(
            {"target": _("A query is raised on a visit, result, adverse event, medication, infusion or patient.")}
        )
    patient = target_patient(target)
    _require(actor, patient.site_id, c.RAISE_ROLES, action="raise", field="target")
    query = Query(
        study_id=patient.study_id,
        patient=patient,
        content_type=ContentType.objects.get_for_model(type(target)),
        object_id=target.pk,
        field=check_field(target, field),
        text=_text(text, required=True)[:500],
        raised_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    query.full_clean()
    query._change_reason = "raised"
    query.save()
    _message(query, c.MessageKind.RAISED, query.text, actor)
    return query


def _locked(query: Query) -> Query:
    return Query.objects.select_for_update(of=("self",)).select_related("patient").get(pk=query.pk)


def _move(query: Query, *, allowed, state: str, action: str) -> None:
    if query.state not in allowed:
        names = {
            "answer": _("Only an open query can be answered; this one is %(state)s."),
            "close": _("Only an open or answered query can be closed; this one is %(state)s."),
            "reopen": _("Only an answered or closed query can be re-opened; this one is %(state)s."),
        }
        raise ValidationError({"state": names[action] % {"state": query.get_state_display()}})
    query.state = state


@transaction.atomic
def query_answer(*, query: Query, text: str, actor) -> Query:
    """The site answers an open query (the coordinator may also correct the data through the usual services).

    An answer is allowed on a locked or signed record, at every door: it is communication about the data, not
    a change to them (no `core.signals.record_changing` is sent). Correcting the data goes through the clinical
    write services, which refuse a locked or signed record (`RecordLocked`, 423 in the API)."""
    query = _locked(query)
    _require(actor, query.patient.site_id, c.ANSWER_ROLES, action="answer")
    text = _text(text, required=True)
    _move(query, allowed={c.QueryState.OPEN}, state=c.QueryState.ANSWERED, action="answer")
    query.answered_at = timezone.now()
    query._change_reason = "answered"
    query.save()
    _message(query, c.MessageKind.ANSWER, text, actor)
    return query


@transaction.atomic
def query_close(*, query: Query, actor, text: str = "") -> Query:
    """A monitor or data manager closes an open or answered query (a note is optional)."""
    query = _locked(query)
    _require(actor, query.patient.site_id, c.CLOSE_ROLES, action="close")
    text = _text(text, required=False)
    _move(query, allowed={c.QueryState.OPEN, c.QueryState.ANSWERED}, state=c.QueryState.CLOSED, action="close")
    query.resolution, query.closed_at = c.Resolution.CLOSED, timezone.now()
    query._change_reason = "closed"
    query.save()
    _message(query, c.MessageKind.CLOSE, text or CLOSED_NOTE, actor)
    return query


@transaction.atomic
def query_reopen(*, query: Query, actor, text: str) -> Query:
    """A monitor or data manager re-opens an answered or closed query, saying why."""
    query = _locked(query)
    _require(actor, query.patient.site_id, c.CLOSE_ROLES, action="reopen")
    text = _text(text, required=True)
    _move(query, allowed={c.QueryState.ANSWERED, c.QueryState.CLOSED}, state=c.QueryState.OPEN, action="reopen")
    query.resolution, query.closed_at, query.answered_at = "", None, None
    query._change_reason = "re-opened"
    query.save()
    _message(query, c.MessageKind.REOPEN, text, actor)
    return query


def open_queries_by_field(target) -> dict[str, int]:
    """{field or item ("" for the record as a whole): number of open or answered queries} of one record."""
    counts: dict[str, int] = {}
    rows = Query.objects.filter(
        content_type=ContentType.objects.get_for_model(type(target)),
        object_id=target.pk,
        state__in=[c.QueryState.OPEN, c.QueryState.ANSWERED],
    ).values_list("field", flat=True)
    for name in rows:
        counts[name] = counts.get(name, 0) + 1
    return counts
