"""Running the edit checks: after every clinical write over the changed record's patient (from the
`record_changed` receiver, inside the writer's transaction), and over whole studies (the `run_edit_checks`
command and the beat job).

A finding opens at most one query per record and rule: its key (`rule:model:id`) is unique and new queries
are inserted with `ON CONFLICT DO NOTHING`, so two writers finding the same thing at once store one query. A
query of an edit check whose finding is gone is closed with a note ("corrected"); one closed that way is
re-opened when its finding comes back. A query a person closed stays closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, override

from core.audit import current_audit_context, history_of_rows
from quality import constants as c
from quality.checks.rules import RULES, Finding, Scope, question, rules_triggered_by
from quality.models import EditCheckSettings, Query, QueryMessage
from quality.services.queries import value_of
from registry.models import Study

# The study run's lock (core/locks.py): the nightly task and the command skip while another run holds it.
LOCK_NAME = "msct-registry:edit-checks"

CHECK_ACTOR = "edit check"
CORRECTED_NOTE = gettext_noop("The data were corrected: the edit check passes now. Closed by the edit check.")
REOPENED_NOTE = gettext_noop("The edit check fails again. Re-opened by the edit check.")


# Settings ----------------------------------------------------------------------------------------------


def rule_params(rules_setting: dict | None, rule_code: str) -> dict | None:
    """A rule's parameters for a study (its defaults, overridden by the study's settings), None when the study
    switched it off."""
    own = (rules_setting or {}).get(rule_code) or {}
    if own.get("enabled") is False:
        return None
    return {**RULES[rule_code].defaults, **{k: v for k, v in own.items() if k != "enabled"}}


def check_rules_setting(value) -> dict:
    """The `rules` of a study's settings, or a ValidationError naming the rule and parameter at fault."""
    if not isinstance(value, dict):
        raise ValidationError({"rules": _('Give an object of rules, e.g. {"creatinine_rise": {"pct": 40}}.')})
    for code, own in value.items():
        if code not in RULES:
            raise ValidationError(
                {
                    "rules": _("Unknown edit check %(code)s; use one of %(codes)s.")
                    % {"code": code, "codes": ", ".join(RULES)}
                }
            )
        if not isinstance(own, dict):
            raise ValidationError({"rules": _("%(code)s: give an object of parameters.") % {"code": code}})
        for name, setting in own.items():
            if name == "enabled":
                if not isinstance(setting, bool):
                    raise ValidationError({"rules": _("%(code)s.enabled: true or false.") % {"code": code}})
                continue
            if name not in RULES[code].defaults:
                raise ValidationError(
                    {
                        "rules": _("%(code)s has no parameter %(name)s; it has %(names)s.")
                        % {"code": code, "name": name, "names": ", ".join(RULES[code].defaults) or "-"}
                    }
                )
            try:
                number = Decimal(str(setting))
            except InvalidOperation:
                number = None
            if isinstance(setting, bool) or number is None or not number.is_finite() or number < 0:
                raise ValidationError(
                    {
                        "rules": _("%(code)s.%(name)s: %(value)s is not a number of at least 0.")
                        % {"code": code, "name": name, "value": setting}
                    }
                )
    return value


@transaction.atomic
def edit_check_settings_save(*, study: Study, rules: dict, query_age_limit_days: int, actor=None) -> EditCheckSettings:
    if actor is not None and not actor.is_superuser:
        raise ValidationError({"study": _("Only an administrator can change a study's edit checks.")})
    settings, _created = EditCheckSettings.objects.get_or_create(study=study)
    settings.rules, settings.query_age_limit_days = check_rules_setting(rules), query_age_limit_days
    settings.full_clean()
    settings.save()
    return settings


def _english(finding: Finding) -> str:
    """A finding's question as stored (in English; pages word it again in the reader's language from `detail`)."""
    with override("en"):
        return question(finding.rule, finding.detail)


# Running -----------------------------------------------------------------------------------------------


@dataclass
class CheckReport:
    findings: int = 0
    opened: int = 0
    closed: int = 0
    reopened: int = 0
    rules: list[str] = field(default_factory=list)


def _insert_new(findings: list[Finding], types: dict[type, int], now) -> list[int]:
    """Insert the queries of `findings`, leaving out any whose key exists (`ON CONFLICT DO NOTHING`): the ids of
    the rows this statement inserted."""
    if not findings:
        return []
    table = connection.ops.quote_name(Query._meta.db_table)
    names = [
        "created_at", "updated_at", "study_id", "patient_id", "content_type_id", "object_id", "field", "rule",
        "key", "text", "detail", "state", "resolution",
    ]  # fmt: skip
    columns = ", ".join(connection.ops.quote_name(Query._meta.get_field(n).column) for n in names)
    detail_field = Query._meta.get_field("detail")
    rows, params = [], []
    for f in findings:
        rows.append("(" + ", ".join(["%s"] * len(names)) + ")")
        with_english = _english(f)[:500]
        params += [
            now, now, f.study_id, f.patient_id, types[f.model], f.object_id, f.field, f.rule, f.key, with_english,
            detail_field.get_db_prep_save(f.detail, connection), c.QueryState.OPEN, "",
        ]  # fmt: skip
    key = connection.ops.quote_name("key")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES {', '.join(rows)} ON CONFLICT ({key}) DO NOTHING RETURNING id",
            params,
        )
        return [row[0] for row in cursor.fetchall()]


def _thread(query_ids: list[int], texts: dict[int, str], values: dict[int, str]) -> None:
    context = current_audit_context()
    QueryMessage.objects.bulk_create(
        QueryMessage(
            query_id=pk,
            kind=c.MessageKind.CHECK,
            actor=CHECK_ACTOR,
            door=context.door,
            text=texts[pk],
            value=values.get(pk, "")[:300],
        )
        for pk in query_ids
    )


def _params_by_study(study_ids) -> dict[int, dict]:
    settings = dict(EditCheckSettings.objects.filter(study_id__in=study_ids).values_list("study_id", "rules"))
    return {study_id: settings.get(study_id) or {} for study_id in study_ids}


@transaction.atomic(savepoint=False)
def run_edit_checks(*, study_ids=None, patient_ids=(), study_id: int | None = None, model=None) -> CheckReport:
    """Run the edit checks over some patients (`patient_ids`, of `study_id`) or over studies (`study_ids`), only
    those a change to a `model` record can affect when it is given; open, close and re-open their queries."""
    if patient_ids:
        scope, study_ids = Scope(patient_ids=tuple(sorted(set(patient_ids)))), [study_id]
    else:
        study_ids = list(study_ids if study_ids is not None else Study.objects.values_list("pk", flat=True))
        scope = Scope(study_ids=tuple(study_ids))
    report = CheckReport()
    if not study_ids:
        return report
    settings = _params_by_study(study_ids)
    findings: list[Finding] = []
    enabled: dict[str, set[int]] = {}
    for rule in rules_triggered_by(model):
        params = {sid: p for sid in study_ids if (p := rule_params(settings[sid], rule.code)) is not None}
        if not params:
            continue
        enabled[rule.code] = set(params)
        report.rules.append(rule.code)
        findings += [f for f in rule.findings(scope, params) if f.study_id in params]
    report.findings = len(findings)
    if not enabled:
        return report
    _sync(scope, findings, enabled, report)
    return report


def _sync(scope: Scope, findings: list[Finding], enabled: dict[str, set[int]], report: CheckReport) -> None:
    now = timezone.now()
    by_key = {f.key: f for f in findings}
    existing = Query.objects.filter(rule__in=list(enabled))
    existing = (
        existing.filter(patient_id__in=scope.patient_ids)
        if scope.patient_ids
        else existing.filter(study_id__in=scope.study_ids)
    )
    existing = list(existing.values_list("pk", "key", "rule", "study_id", "state", "resolution"))
    known = {row[1] for row in existing}
    new = [f for key, f in by_key.items() if key not in known]
    types = {model: ContentType.objects.get_for_model(model).pk for model in {f.model for f in new}}
    opened = _insert_new(new, types, now)
    if opened:
        keys = dict(Query.objects.filter(pk__in=opened).values_list("pk", "key"))
        history_of_rows(Query, opened, reasons=["edit check"] * len(opened))
        _thread(opened, {pk: _english(by_key[k]) for pk, k in keys.items()},
                {pk: by_key[k].value for pk, k in keys.items()})  # fmt: skip
    report.opened = len(opened)
    live = {c.QueryState.OPEN, c.QueryState.ANSWERED}
    to_close = [
        pk
        for pk, key, rule, study_id, state, _r in existing
        if state in live and key not in by_key and study_id in enabled[rule]
    ]
    to_reopen = [
        pk
        for pk, key, rule, study_id, state, resolution in existing
        if state == c.QueryState.CLOSED and resolution == c.Resolution.CORRECTED and key in by_key
    ]
    if to_close:
        report.closed = Query.objects.filter(pk__in=to_close, state__in=live).update(
            state=c.QueryState.CLOSED, resolution=c.Resolution.CORRECTED, closed_at=now, updated_at=now
        )
        history_of_rows(Query, to_close, reasons=["corrected"] * len(to_close), update=True)
        closed = Query.objects.filter(pk__in=to_close).prefetch_related("target")
        _thread(to_close, dict.fromkeys(to_close, CORRECTED_NOTE), {q.pk: value_of(q.target, q.field) for q in closed})
    if to_reopen:
        report.reopened = Query.objects.filter(pk__in=to_reopen, state=c.QueryState.CLOSED).update(
            state=c.QueryState.OPEN, resolution="", closed_at=None, answered_at=None, updated_at=now
        )
        history_of_rows(Query, to_reopen, reasons=["re-opened by the edit check"] * len(to_reopen), update=True)
        keys = dict(Query.objects.filter(pk__in=to_reopen).values_list("pk", "key"))
        _thread(to_reopen, dict.fromkeys(to_reopen, REOPENED_NOTE), {pk: by_key[k].value for pk, k in keys.items()})
