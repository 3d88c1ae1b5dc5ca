"""Source data verification, investigator signatures and locks: every door (admin, API, commands) calls
these functions, and the receivers of `core.signals` (`quality/receivers.py`) call `write_refusal` and
`verifications_clear` for every clinical write.

Roles (registry.constants.Role), each for the sites where the user holds it: a monitor verifies against
source, an investigator signs, a data manager locks, unlocks and voids signatures.
"""

from __future__ import annotations

import datetime as dt

from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.translation import gettext as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from core.api.problems import RecordLocked
from core.audit import current_audit_context
from followup.models import AdverseEvent, Result, Visit
from patients.models import Patient
from quality.models import Lock, RecordKind, Signature, SigningFailure, SourceVerification
from quality.services.queries import value_of
from registry.constants import Role
from registry.models import Membership, Study

# Who may ------------------------------------------------------------------------------------------------


def has_role(user, site_id: int, role: str, *, superuser: bool = True, memberships=None) -> bool:
    """Whether `user` holds `role` at the site (a superuser counts unless `superuser` is False). `memberships`,
    the user's (site id, role) pairs when the caller has read them already, saves the query."""
    if user is None or not user.is_active:
        return False
    if superuser and user.is_superuser:
        return True
    if memberships is not None:
        return (site_id, role) in memberships
    return Membership.objects.filter(user_id=user.pk, site_id=site_id, role=role).exists()


def role_site_ids(user, role: str) -> set[int] | None:
    """The sites where `user` holds `role` (None: every site, for a superuser)."""
    if user.is_superuser:
        return None
    return set(Membership.objects.filter(user_id=user.pk, role=role).values_list("site_id", flat=True))


def _require(user, site_id: int, role: str, message: str, *, superuser: bool = True) -> None:
    if not has_role(user, site_id, role, superuser=superuser):
        raise PermissionDenied(message)


# Records ------------------------------------------------------------------------------------------------


def record_parts(record) -> dict:
    """{kind, patient, visit, adverse_event} of a visit, an adverse event or a patient."""
    if isinstance(record, Visit):
        return {"kind": RecordKind.VISIT, "patient": record.patient, "visit": record, "adverse_event": None}
    if isinstance(record, AdverseEvent):
        return {"kind": RecordKind.ADVERSE_EVENT, "patient": record.patient, "visit": None, "adverse_event": record}
    if isinstance(record, Patient):
        return {"kind": RecordKind.PATIENT, "patient": record, "visit": None, "adverse_event": None}
    raise TypeError(f"not a record of source verification or signature: {type(record).__name__}")


def _record_filter(record) -> Q:
    parts = record_parts(record)
    if parts["kind"] == RecordKind.VISIT:
        return Q(kind=RecordKind.VISIT, visit_id=record.pk)
    if parts["kind"] == RecordKind.ADVERSE_EVENT:
        return Q(kind=RecordKind.ADVERSE_EVENT, adverse_event_id=record.pk)
    return Q(kind=RecordKind.PATIENT, patient_id=record.pk)


# Locks --------------------------------------------------------------------------------------------------


def active_locks() -> QuerySet:
    return Lock.objects.filter(released_at__isnull=True)


def active_signatures() -> QuerySet:
    return Signature.objects.filter(voided_at__isnull=True)


def write_refusal(instance, *, patient_id: int | None, study_id: int) -> str | None:
    """Why a write to `instance` (a patient, infusion, medication, adverse event or visit) is refused, or None:
    an active lock of the patient or of the study at the patient's site, a signature of the patient's
    casebook, or a signature of the visit or adverse event itself. One query."""
    if patient_id is None:
        site_id = instance.site_id
        locks = active_locks().filter(study_id=study_id, site_id=site_id, patient__isnull=True)
        lock = locks.values_list("reason", flat=True).first()
        if lock is not None:
            return _("Study locked at this site: %(reason)s") % {"reason": lock}
        return None
    row = Patient.objects.filter(pk=patient_id).annotate(**_refusal_subqueries(instance, patient_id, study_id))
    row = row.values("lock_reason", "lock_whole", "signed_kind").first()
    return None if row is None else _refusal_from(row)


def _refusal_subqueries(instance, patient_id: int, study_id: int) -> dict:
    """The annotations `write_refusal` reads: the earliest active lock of the patient or of the study at the
    patient's site (its reason, and its patient if it is the patient's own), and the kind of the earliest
    active signature covering `instance` (the casebook's, or the visit's or adverse event's own)."""
    site = Patient.objects.filter(pk=patient_id).values("site_id")
    lock = active_locks().filter(
        Q(patient_id=patient_id) | Q(patient__isnull=True, study_id=study_id, site_id=Subquery(site))
    )
    signed = Q(kind=RecordKind.PATIENT, patient_id=patient_id)
    if isinstance(instance, Visit) and instance.pk:
        signed |= Q(kind=RecordKind.VISIT, visit_id=instance.pk)
    elif isinstance(instance, AdverseEvent) and instance.pk:
        signed |= Q(kind=RecordKind.ADVERSE_EVENT, adverse_event_id=instance.pk)
    return {
        "lock_reason": Subquery(lock.order_by("locked_at", "pk").values("reason")[:1]),
        "lock_whole": Subquery(lock.order_by("locked_at", "pk").values("patient_id")[:1]),
        "signed_kind": Subquery(active_signatures().filter(signed).order_by("signed_at", "pk").values("kind")[:1]),
    }


def _refusal_from(row: dict) -> str | None:
    if row["lock_reason"] is not None:
        if row["lock_whole"] is None:
            return _("Study locked at this site: %(reason)s") % {"reason": row["lock_reason"]}
        return _("Patient locked: %(reason)s") % {"reason": row["lock_reason"]}
    if row["signed_kind"] == RecordKind.PATIENT:
        return _("The patient's casebook is signed by the investigator; a data manager must unlock it first.")
    if row["signed_kind"] is not None:
        return _SIGNED_RECORD()
    return None


def _SIGNED_RECORD() -> str:  # noqa: N802 (a message, translated when asked)
    return _("This record is signed by the investigator; a data manager must unlock it first.")


def refuse_locked_write(instance, *, patient_id: int | None, study_id: int) -> None:
    """Raise RecordLocked naming the visit, or else the patient (an adverse event signed itself: the event)."""
    refusal = write_refusal(instance, patient_id=patient_id, study_id=study_id)
    if refusal:
        field = "visit" if isinstance(instance, Visit) else "patient"
        if isinstance(instance, AdverseEvent) and refusal == _SIGNED_RECORD():
            field = "adverse_event"
        raise RecordLocked({field: [refusal]}, code="locked")


def locked_visits(visits: list[Visit], *, study_id: int) -> dict[int, RecordLocked]:
    """`refuse_locked_write` for the visits of a batch at once, in one query: {visit pk: RecordLocked}."""
    if not visits:
        return {}
    lock = active_locks().filter(
        Q(patient_id=OuterRef("patient_id"))
        | Q(patient__isnull=True, study_id=study_id, site_id=OuterRef("patient__site_id"))
    )
    signed = active_signatures().filter(
        Q(kind=RecordKind.PATIENT, patient_id=OuterRef("patient_id"))
        | Q(kind=RecordKind.VISIT, visit_id=OuterRef("pk"))
    )
    rows = (
        Visit.objects.filter(pk__in=[v.pk for v in visits])
        .annotate(
            lock_reason=Subquery(lock.order_by("locked_at").values("reason")[:1]),
            lock_whole=Subquery(lock.order_by("locked_at").values("patient_id")[:1]),
            signed_kind=Subquery(signed.order_by("signed_at").values("kind")[:1]),
        )
        .filter(Q(lock_reason__isnull=False) | Q(signed_kind__isnull=False))
        .values_list("pk", "lock_reason", "lock_whole", "signed_kind")
    )
    refused = {}
    for pk, reason, whole, kind in rows:
        if reason is not None:
            text = (
                _("Study locked at this site: %(reason)s") % {"reason": reason}
                if whole is None
                else _("Patient locked: %(reason)s") % {"reason": reason}
            )
        elif kind == RecordKind.PATIENT:
            text = _("The patient's casebook is signed by the investigator; a data manager must unlock it first.")
        else:
            text = _SIGNED_RECORD()
        refused[pk] = RecordLocked({"visit": [text]}, code="locked")
    return refused


def _check_reason(reason: str, field: str = "reason") -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({field: _("Give a reason.")})
    return reason


@transaction.atomic
def lock_patient(*, patient: Patient, reason: str, actor) -> Lock:
    """Lock one patient: every clinical write to the patient and their records is refused."""
    _require(actor, patient.site_id, Role.DATA_MANAGER, _("Only a data manager of the patient's site can lock."))
    reason = _check_reason(reason)
    if active_locks().filter(patient=patient).exists():
        raise ValidationError({"patient": _("Patient %(code)s is already locked.") % {"code": patient.subject_code}})
    return Lock.objects.create(
        study_id=patient.study_id,
        site_id=patient.site_id,
        patient=patient,
        reason=reason,
        locked_by=actor,
        locked_at=timezone.now(),
    )


@transaction.atomic
def lock_study(*, study: Study, reason: str, actor) -> list[Lock]:
    """Lock a whole study at each of the actor's sites where they are a data manager (a superuser: every site
    of the study). New patients, and every write to the study's patients there, are refused."""
    reason = _check_reason(reason)
    sites = set(study.study_sites.values_list("site_id", flat=True))
    mine = role_site_ids(actor, Role.DATA_MANAGER) if actor.is_active else set()
    if mine is not None:
        sites &= mine
    if not sites:
        raise PermissionDenied(_("Only a data manager of a site of the study can lock it."))
    held = set(active_locks().filter(study=study, patient__isnull=True).values_list("site_id", flat=True))
    now = timezone.now()
    return [
        Lock.objects.create(study=study, site_id=site_id, reason=reason, locked_by=actor, locked_at=now)
        for site_id in sorted(sites - held)
    ]


def _covered_signatures(lock: Lock) -> QuerySet:
    signatures = active_signatures().filter(patient__study_id=lock.study_id, patient__site_id=lock.site_id)
    return signatures.filter(patient_id=lock.patient_id) if lock.patient_id else signatures


@transaction.atomic
def lock_release(*, lock: Lock, reason: str, actor) -> Lock:
    """Unlock: needs a reason, and voids every signature of the records the lock covered."""
    lock = Lock.objects.select_for_update().get(pk=lock.pk)
    _require(actor, lock.site_id, Role.DATA_MANAGER, _("Only a data manager of the site can unlock."))
    reason = _check_reason(reason, "release_reason")
    if lock.released_at is not None:
        raise ValidationError({"lock": _("This lock was already released.")})
    now = timezone.now()
    lock.released_at, lock.released_by, lock.release_reason = now, actor, reason
    lock._change_reason = reason
    lock.save()
    for signature in _covered_signatures(lock):
        _void(signature, actor=actor, reason=_("Unlocked: %(reason)s") % {"reason": reason}, now=now)
    return lock


def _void(signature: Signature, *, actor, reason: str, now) -> None:
    signature.voided_at, signature.voided_by, signature.void_reason = now, actor, reason
    signature._change_reason = reason
    signature.save()


@transaction.atomic
def signature_void(*, signature: Signature, reason: str, actor) -> Signature:
    """Unlock a signed record: the signature is voided with the reason and the record can be changed again."""
    signature = Signature.objects.select_for_update().select_related("patient").get(pk=signature.pk)
    _require(actor, signature.patient.site_id, Role.DATA_MANAGER, _("Only a data manager of the site can unlock."))
    reason = _check_reason(reason, "void_reason")
    if signature.voided_at is not None:
        raise ValidationError({"signature": _("This signature was already voided.")})
    _void(signature, actor=actor, reason=reason, now=timezone.now())
    return signature


# Signatures ---------------------------------------------------------------------------------------------


def signature_meaning(kind: str) -> str:
    """What signing means, shown before signing and stored with the signature (21 CFR 11.50(a)(3))."""
    return {
        RecordKind.VISIT: _(
            "I am the investigator responsible for this patient. I have reviewed the data of this visit and "
            "attest that they are accurate and complete."
        ),
        RecordKind.ADVERSE_EVENT: _(
            "I am the investigator responsible for this patient. I have reviewed this adverse event, its grade, "
            "seriousness and relatedness, and attest that the record is accurate and complete."
        ),
        RecordKind.PATIENT: _(
            "I am the investigator responsible for this patient. I have reviewed the whole casebook and attest "
            "that its data are accurate and complete."
        ),
    }[kind]


def printed_name(user) -> str:
    return user.get_full_name().strip() or user.get_username()


def signing_limits() -> tuple[int, dt.timedelta]:
    """How many wrong passwords or codes in a row lock signing, and for how long: the sign-in lockout's
    (django-axes: AXES_FAILURE_LIMIT, AXES_COOLOFF_HOURS in config/settings/base.py)."""
    return int(settings.AXES_FAILURE_LIMIT), get_cool_off() or dt.timedelta(minutes=30)


def signing_locked_until(user, *, now=None):
    """Until when signing is locked for `user` after too many wrong passwords or codes (None: not locked)."""
    now = now or timezone.now()
    return (
        SigningFailure.objects.filter(user_id=user.pk, locks_until__gt=now)
        .order_by("-locks_until")
        .values_list("locks_until", flat=True)
        .first()
    )


@transaction.atomic
def _signing_failed(*, actor, parts: dict, field: str, now) -> bool:
    """Record a wrong password or code; True when it reaches the limit and locks signing. The failures counted
    are the user's since their last signature and within the cool-off; the user's row is locked first, so two
    wrong attempts at once count as two."""
    limit, cool_off = signing_limits()
    get_user_model().objects.select_for_update().filter(pk=actor.pk).first()
    since = now - cool_off
    last_signed = (
        Signature.objects.filter(signer_id=actor.pk).order_by("-signed_at").values_list("signed_at", flat=True).first()
    )
    if last_signed is not None:
        since = max(since, last_signed)
    locks = SigningFailure.objects.filter(user_id=actor.pk, failed_at__gt=since).count() + 1 >= limit
    SigningFailure.objects.create(
        user=actor,
        kind=parts["kind"],
        patient=parts["patient"],
        field=field,
        failed_at=now,
        locks_until=now + cool_off if locks else None,
    )
    return locks


def _check_signing_credentials(*, actor, parts: dict, password: str, otp_token: str) -> None:
    """Refuse a locked user, then a wrong password or code (recorded, in its own transaction, so that the
    refusal does not undo it)."""
    now = timezone.now()
    limit, cool_off = signing_limits()
    until = signing_locked_until(actor, now=now)
    if until is not None:
        raise ValidationError(
            {
                "password": _(
                    "Signing is locked for your account after %(limit)d wrong passwords or authenticator codes; "
                    "try again after %(until)s."
                )
                % {"limit": limit, "until": timezone.localtime(until).strftime("%Y-%m-%d %H:%M %Z")}
            }
        )
    wrong = None
    if not password or not actor.check_password(password):
        wrong = ("password", _("The password is not correct; the record was not signed."))
    else:
        devices = TOTPDevice.objects.devices_for_user(actor, confirmed=True)
        if devices.exists():
            token = (otp_token or "").strip()
            if not token or not any(device.verify_token(token) for device in devices):
                wrong = ("otp_token", _("The authenticator code is not correct; the record was not signed."))
    if wrong is None:
        return
    field, message = wrong
    if _signing_failed(actor=actor, parts=parts, field=field, now=now):
        message = " ".join(
            [
                message,
                _(
                    "After %(limit)d wrong passwords or codes, signing is now locked for your account for "
                    "%(minutes)d minutes."
                )
                % {"limit": limit, "minutes": int(cool_off.total_seconds() // 60)},
            ]
        )
    raise ValidationError({field: message})


def signature_sign(*, record, actor, password: str, otp_token: str = "") -> Signature:
    """An investigator of the record's site signs it, re-entering the password (and the current TOTP code
    when they have a confirmed device). The signature stores the printed name, the time and the meaning.

    Each wrong password or code is recorded (`SigningFailure`); as many in a row as lock sign-in (5 within 30
    minutes) lock signing for the user for the cool-off (30 minutes), whatever is given meanwhile."""
    parts = record_parts(record)
    patient = parts["patient"]
    _require(
        actor,
        patient.site_id,
        Role.INVESTIGATOR,
        _("Only an investigator of the patient's site can sign."),
        superuser=False,
    )
    _check_signing_credentials(actor=actor, parts=parts, password=password, otp_token=otp_token)
    return _signature_create(record=record, parts=parts, actor=actor)


@transaction.atomic
def _signature_create(*, record, parts: dict, actor) -> Signature:
    patient = parts["patient"]
    if active_signatures().filter(_record_filter(record)).exists():
        raise ValidationError({"record": _("This record is already signed.")})
    refusal = active_locks().filter(
        Q(patient=patient) | Q(patient__isnull=True, study_id=patient.study_id, site_id=patient.site_id)
    )
    if refusal.exists():
        raise RecordLocked({"record": [_("The record is locked; it cannot be signed until it is unlocked.")]})
    return Signature.objects.create(
        **parts,
        signer=actor,
        printed_name=printed_name(actor),
        meaning=signature_meaning(parts["kind"]),
        signed_at=timezone.now(),
    )


# Source data verification -------------------------------------------------------------------------------


def sdv_field_choices(record) -> list[tuple[str, str]]:
    """The fields of a record a monitor may verify one by one: its editable fields, and a visit's results
    (`result:<code>`)."""
    names = [
        (f.name, str(f.verbose_name))
        for f in type(record)._meta.concrete_fields
        if f.editable and not f.primary_key and f.name not in ("patient", "study", "site", "definition")
    ]
    if isinstance(record, Visit):
        names += [(f"result:{code}", code) for code in record.results.order_by("code").values_list("code", flat=True)]
    return names


def _field_values(record, fields: list[str], results: dict[str, Result]) -> dict[str, str]:
    """The values of `fields` of `record` as text ("" for a result not recorded); `results` are the visit's by
    code."""
    values = {}
    for name in fields:
        if name.startswith("result:"):
            result = results.get(name.removeprefix("result:"))
            values[name] = value_of(result) if result is not None else ""
        else:
            values[name] = type(record)._meta.get_field(name).value_to_string(record)
    return values


@transaction.atomic
def sdv_mark(*, record, actor, fields: list[str] | None = None) -> SourceVerification:
    """A monitor of the record's site marks it verified against source: the whole form, or the named fields
    (their values are kept, so that only a change to one of them clears the mark)."""
    parts = record_parts(record)
    _require(
        actor, parts["patient"].site_id, Role.MONITOR, _("Only a monitor of the patient's site can verify source.")
    )
    fields = [f.strip() for f in (fields or []) if f and f.strip()]
    if len(set(fields)) != len(fields):
        raise ValidationError({"fields": _("Name each field once.")})
    values = {}
    if fields:
        known = [name for name, _label in sdv_field_choices(record)]
        unknown = [name for name in fields if name not in known]
        if unknown:
            raise ValidationError(
                {
                    "fields": _("%(fields)s: not a field of this record; choose among %(known)s.")
                    % {"fields": ", ".join(unknown), "known": ", ".join(known)}
                }
            )
        results = {r.code: r for r in record.results.all()} if isinstance(record, Visit) else {}
        values = _field_values(record, fields, results)
    if active_verifications().filter(_record_filter(record)).exists():
        raise ValidationError({"record": _("This record is already verified against source.")})
    return SourceVerification.objects.create(
        **parts, fields=fields, values=values, verified_by=actor, verified_at=timezone.now()
    )


def active_verifications() -> QuerySet:
    return SourceVerification.objects.filter(cleared_at__isnull=True)


def verifications_clear(instance, *, patient_id: int | None) -> int:
    """A change to a visit, an adverse event or a patient clears its verification, saying who changed it and
    through which door. Changes to a patient's infusions or medications clear the baseline's."""
    if patient_id is None:
        return 0
    return verifications_clear_many(type(instance), [instance], patient_ids=[patient_id])


def _changed_fields(marks: list[SourceVerification]) -> dict[int, list[str]]:
    """For each mark of chosen fields (with their values kept): the fields whose value differs now, as
    "field: before -> now". Reads each kind of record once, and the results once when a result was verified."""
    by_field = [m for m in marks if m.fields and m.values]
    if not by_field:
        return {}
    models = {RecordKind.VISIT: (Visit, "visit_id"), RecordKind.ADVERSE_EVENT: (AdverseEvent, "adverse_event_id")}
    models[RecordKind.PATIENT] = (Patient, "patient_id")
    records = {}
    for kind, (model, ref) in models.items():
        ids = {getattr(m, ref) for m in by_field if m.kind == kind}
        if ids:
            records[kind] = model.objects.in_bulk(ids)
    results: dict[int, dict[str, Result]] = {}
    visit_ids = {m.visit_id for m in by_field if any(f.startswith("result:") for f in m.fields)}
    if visit_ids:
        for result in Result.objects.filter(visit_id__in=visit_ids):
            results.setdefault(result.visit_id, {})[result.code] = result
    changed = {}
    for mark in by_field:
        model, ref = models[mark.kind]
        record = records[mark.kind].get(getattr(mark, ref))
        now = _field_values(record, mark.fields, results.get(mark.visit_id, {})) if record else {}
        changed[mark.pk] = [
            f"{name}: {mark.values.get(name, '')} -> {now.get(name, '')}"
            for name in mark.fields
            if mark.values.get(name) != now.get(name)
        ]
    return changed


def verifications_clear_many(model, instances: list, *, patient_ids: list[int]) -> int:
    """`verifications_clear` for records of one kind changed together (a visit batch), in a fixed number of
    statements. A mark of chosen fields is cleared only when one of them changed, and its reason names them."""
    if model is Visit:
        target = Q(kind=RecordKind.VISIT, visit_id__in=[i.pk for i in instances])
    elif model is AdverseEvent:
        target = Q(kind=RecordKind.ADVERSE_EVENT, adverse_event_id__in=[i.pk for i in instances])
    else:
        target = Q(kind=RecordKind.PATIENT, patient_id__in=patient_ids)
    marks = list(active_verifications().filter(target))
    if not marks:
        return 0
    changed = _changed_fields(marks)
    ctx = current_audit_context()
    who = ctx.actor or _("the system")
    label = getattr(model._meta, "verbose_name", model.__name__)
    now = timezone.now()
    cleared = 0
    for verification in marks:
        if verification.pk in changed:
            if not changed[verification.pk]:
                continue  # none of the fields verified changed
            reason = _("Changed after verification: %(fields)s (%(what)s, by %(who)s through %(door)s).") % {
                "fields": "; ".join(changed[verification.pk]),
                "what": label,
                "who": who,
                "door": ctx.door,
            }
        else:
            reason = _("Changed after verification (%(what)s, by %(who)s through %(door)s).") % {
                "what": label,
                "who": who,
                "door": ctx.door,
            }
        verification.cleared_at, verification.cleared_reason = now, reason
        verification._change_reason = reason
        verification.save(update_fields=["cleared_at", "cleared_reason"])
        cleared += 1
    return cleared


# Status of records (API fields, admin) ------------------------------------------------------------------


def _kind_of(model) -> str:
    return {Visit: RecordKind.VISIT, AdverseEvent: RecordKind.ADVERSE_EVENT, Patient: RecordKind.PATIENT}[model]


def status_annotate(queryset: QuerySet) -> QuerySet:
    """Annotate visits, adverse events or patients with their verification, signature and lock (subqueries
    of the same statement: a page costs no more queries)."""
    model = queryset.model
    kind = _kind_of(model)
    ref = {RecordKind.VISIT: "visit_id", RecordKind.ADVERSE_EVENT: "adverse_event_id", RecordKind.PATIENT: "patient_id"}
    patient_ref = "pk" if kind == RecordKind.PATIENT else "patient_id"
    study_ref = "study_id" if kind == RecordKind.PATIENT else "patient__study_id"
    site_ref = "site_id" if kind == RecordKind.PATIENT else "patient__site_id"
    own = Q(kind=kind, **{ref[kind]: OuterRef("pk")})
    locks = active_locks().filter(
        Q(patient_id=OuterRef(patient_ref))
        | Q(patient__isnull=True, study_id=OuterRef(study_ref), site_id=OuterRef(site_ref))
    )
    return queryset.annotate(
        dq_verified_at=Subquery(active_verifications().filter(own).values("verified_at")[:1]),
        dq_signed_at=Subquery(active_signatures().filter(own).values("signed_at")[:1]),
        dq_casebook_signed=Exists(
            active_signatures().filter(kind=RecordKind.PATIENT, patient_id=OuterRef(patient_ref))
        ),
        dq_lock_reason=Subquery(locks.order_by("locked_at", "pk").values("reason")[:1]),
    )


def status_of(obj) -> dict:
    """{source_verified, verified_at, signed, signed_at, locked, lock_reason} of a visit, adverse event or
    patient: from `status_annotate`'s annotations when present, else read now."""
    if not hasattr(obj, "dq_lock_reason"):
        obj = status_annotate(type(obj).objects.filter(pk=obj.pk)).get()
    signed = obj.dq_signed_at is not None
    locked = obj.dq_lock_reason is not None or signed or obj.dq_casebook_signed
    reason = obj.dq_lock_reason or ("signed" if signed or obj.dq_casebook_signed else "")
    return {
        "source_verified": obj.dq_verified_at is not None,
        "verified_at": obj.dq_verified_at,
        "signed": signed,
        "signed_at": obj.dq_signed_at,
        "locked": bool(locked),
        "lock_reason": reason,
    }


def page_state(obj, *, patient_id: int, study_id: int) -> tuple[str | None, bool]:
    """`write_refusal` of a stored visit, adverse event or patient and whether it is verified against source
    (`status_of`'s `source_verified`), in one statement: what the record's page says about it.

    Written in SQL: the page is opened far more often than records are written, and the ORM took three
    quarters of the time to build the statement. `tests/quality/test_review_services.py` holds it equal to
    `write_refusal` and `status_of` in random combinations of locks, signatures and verifications."""
    kind = _kind_of(type(obj))
    own = {RecordKind.VISIT: "visit_id", RecordKind.ADVERSE_EVENT: "adverse_event_id", RecordKind.PATIENT: "patient_id"}
    params = [patient_id, study_id, patient_id, RecordKind.PATIENT, patient_id, kind, obj.pk, kind, obj.pk]
    with connection.cursor() as cursor:
        cursor.execute(_page_state_sql(own[kind]), params)
        rows = {part: (value, whole) for part, value, whole in cursor.fetchall()}
    lock_reason, lock_whole = rows.get("lock", (None, None))
    row = {"lock_reason": lock_reason, "lock_whole": lock_whole, "signed_kind": rows.get("sign", (None,))[0]}
    return _refusal_from(row), "verified" in rows


def _page_state_sql(own: str) -> str:
    """The earliest active lock of the patient or of its study at its site (as `_refusal_subqueries`), the
    kind of the earliest active signature of the casebook or of the record, and an active verification of
    the record: one row each, when there is one."""
    lock, signature, verification, patient = (
        model._meta.db_table for model in (Lock, Signature, SourceVerification, Patient)
    )
    lock_pk, signature_pk, patient_pk = (model._meta.pk.column for model in (Lock, Signature, Patient))
    return f"""
        SELECT 'lock', l.reason, l.patient_id FROM (
            SELECT reason, patient_id FROM {lock}
            WHERE released_at IS NULL AND (patient_id = %s OR (patient_id IS NULL AND study_id = %s
                AND site_id = (SELECT site_id FROM {patient} WHERE {patient_pk} = %s)))
            ORDER BY locked_at, {lock_pk} LIMIT 1) l
        UNION ALL
        SELECT 'sign', s.kind, NULL FROM (
            SELECT kind FROM {signature}
            WHERE voided_at IS NULL AND ((kind = %s AND patient_id = %s) OR (kind = %s AND {own} = %s))
            ORDER BY signed_at, {signature_pk} LIMIT 1) s
        UNION ALL
        SELECT 'verified', NULL, NULL FROM (
            SELECT 1 AS one FROM {verification} WHERE cleared_at IS NULL AND kind = %s AND {own} = %s LIMIT 1) v
    """  # noqa: S608 (table and column names from the models; values as parameters)
