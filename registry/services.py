"""Writes of the registry app: studies, sites, memberships, follow-up templates, donors and lots.

Every write validates (`full_clean()` plus the rules here), saves inside a transaction and returns the
object. `actor` is the user making the change (None for the system or a command); a user may write only
for the sites where they hold a writing role.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext
from django.utils.translation import gettext as _

from core.spreadsheets import formula_errors
from registry import constants as c
from registry.models import (
    CellProduct,
    Donor,
    Membership,
    OutcomeSettings,
    ReminderPolicy,
    Site,
    Study,
    StudySite,
    VisitDefinition,
    user_can_write_site,
)


def ensure_can_write(actor, site: Site | int, *, field: str = "site") -> None:
    """Refuse a write by `actor` for a site where they hold no writing role."""
    if actor is None:
        return
    site_id = site.pk if isinstance(site, Site) else site
    if not user_can_write_site(actor, site_id):
        raise ValidationError({field: gettext("You can only enter data for the sites where you hold a writing role.")})


def date_horizon(today: dt.date) -> dt.date:
    """The latest date the registry accepts, seen from `today` (docs/clinical-rules.md, "Dates")."""
    try:
        return today.replace(year=today.year + c.DATE_HORIZON_YEARS)
    except ValueError:  # 29 February
        return today.replace(year=today.year + c.DATE_HORIZON_YEARS, day=28)


def horizon_errors(today: dt.date, **dates: dt.date | None) -> dict[str, str]:
    """Per field, the error of a date beyond the horizon (none for dates within it or missing)."""
    latest = date_horizon(today)
    return {
        name: _("%(date)s is more than %(years)s years ahead (after %(latest)s); give the real date.")
        % {"date": value.isoformat(), "years": c.DATE_HORIZON_YEARS, "latest": latest.isoformat()}
        for name, value in dates.items()
        if isinstance(value, dt.date) and value > latest
    }


def plain_text_errors(instance) -> dict[str, str]:
    """Errors of the model's `PLAIN_TEXT_FIELDS` whose text starts like a spreadsheet formula."""
    names = getattr(type(instance), "PLAIN_TEXT_FIELDS", ())
    return formula_errors(**{name: getattr(instance, name) for name in names})


def full_clean_plain(instance, *, exclude: Iterable[str] | None = None) -> None:
    """`full_clean()` and the plain-text rule together: every error of both at once."""
    errors: dict[str, list[str]] = {name: [message] for name, message in plain_text_errors(instance).items()}
    try:
        instance.full_clean(exclude=list(exclude) if exclude else None)
    except ValidationError as exc:
        if not hasattr(exc, "error_dict"):
            raise
        for name, messages in exc.message_dict.items():
            errors.setdefault(name, []).extend(messages)
    if errors:
        raise ValidationError(errors)


def save_validated(instance, *, reason: str = "", exclude: Iterable[str] | None = None):
    """`full_clean()` and the plain-text rule, then save, carrying the change reason into the audit trail."""
    full_clean_plain(instance, exclude=exclude)
    if reason:
        instance._change_reason = reason
    instance.save()
    return instance


# Studies and sites -------------------------------------------------------------------------------------


@transaction.atomic
def site_create(*, code: str, name: str, country: str, time_zone: str, **fields) -> Site:
    return save_validated(Site(code=code, name=name, country=country, time_zone=time_zone, **fields))


@transaction.atomic
def study_create(
    *,
    code: str,
    registration_id: str,
    title: str,
    phase: str,
    target_enrolment: int,
    sites: Iterable[Site] = (),
    install_default_template: bool = True,
    **fields,
) -> Study:
    """Create a study with its sites and, unless told otherwise, the default follow-up template
    (docs/clinical-rules.md, "Follow-up schedule")."""
    study = save_validated(
        Study(
            code=code,
            registration_id=registration_id,
            title=title,
            phase=phase,
            target_enrolment=target_enrolment,
            **fields,
        )
    )
    for site in sites:
        study_add_site(study=study, site=site, reason="study created")
    OutcomeSettings.objects.get_or_create(study=study)
    ReminderPolicy.objects.get_or_create(study=study)
    if install_default_template:
        schedule_install_default(study=study)
    return study


# Study status and site participation (docs/clinical-rules.md, "Study status and site participation") -------


def _ensure_superuser(actor, *, field: str) -> None:
    if actor is not None and not (actor.is_active and actor.is_superuser):
        raise ValidationError({field: _("Only a superuser changes a study's status or the sites taking part in it.")})


@transaction.atomic
def study_save(*, study: Study, reason: str = "", actor=None) -> Study:
    """Create or change a study; a change of status needs a reason (kept in the audit trail). A new study gets
    its outcome definitions, reminder policy and the default follow-up template."""
    _ensure_superuser(actor, field="status")
    creating = study.pk is None
    if not creating:
        before = Study.objects.select_for_update().filter(pk=study.pk).values_list("status", flat=True).first()
        if before != study.status and not reason.strip():
            raise ValidationError(
                {
                    "reason": _("Give a reason for changing the study's status from '%(before)s' to '%(after)s'.")
                    % {"before": before, "after": study.status}
                }
            )
    save_validated(study, reason=reason)
    if creating:
        OutcomeSettings.objects.get_or_create(study=study)
        ReminderPolicy.objects.get_or_create(study=study)
        schedule_install_default(study=study)
    return study


def study_change_status(*, study: Study, status: str, reason: str, actor=None) -> Study:
    """Move a study to `status` (planned, recruiting, active, suspended, completed, terminated), with a reason."""
    if status not in c.StudyStatus.values:
        raise ValidationError(
            {
                "status": _("Unknown status '%(status)s'; use one of %(choices)s.")
                % {"status": status, "choices": ", ".join(c.StudyStatus.values)}
            }
        )
    if not reason.strip():
        raise ValidationError({"reason": _("Give a reason for changing the study's status.")})
    study = Study.objects.get(pk=study.pk)
    study.status = status
    return study_save(study=study, reason=reason, actor=actor)


@transaction.atomic
def study_site_save(*, link: StudySite, reason: str = "", actor=None) -> StudySite:
    """Add a site to a study, remove it (`removed_on` set) or add it back (`removed_on` cleared), audited with
    the reason. Adding a site to a study for the first time may go without one ("site added to the study");
    removing it or adding it back may not."""
    _ensure_superuser(actor, field="site")
    before = StudySite.objects.select_for_update().filter(pk=link.pk).first() if link.pk else None
    if before is None and link.pk is None:
        before = StudySite.objects.select_for_update().filter(study_id=link.study_id, site_id=link.site_id).first()
        if before is not None:
            link.pk, link.activated_on = before.pk, link.activated_on or before.activated_on
    if before is not None and (before.study_id, before.site_id) != (link.study_id, link.site_id):
        raise ValidationError({"site": _("The study and the site of a participation cannot change; add another.")})
    removing = link.removed_on is not None and (before is None or before.removed_on != link.removed_on)
    returning = before is not None and before.removed_on is not None and link.removed_on is None
    if (removing or returning) and not reason.strip():
        if removing:
            raise ValidationError({"reason": _("Give a reason for removing the site from the study.")})
        raise ValidationError({"reason": _("Give a reason for adding the site back to the study.")})
    if link.removed_on is not None and link.removed_on > link.site.today():
        raise ValidationError({"removed_on": _("A site is removed from a study on a day that has come, not ahead.")})
    if before is None and not reason.strip():
        reason = "site added to the study"
    return save_validated(link, reason=reason)


def study_add_site(
    *, study: Study, site: Site, activated_on: dt.date | None = None, reason: str = "", actor=None
) -> StudySite:
    """Add `site` to `study`, or add it back (with a reason) after it was removed; idempotent otherwise."""
    link = StudySite.objects.filter(study=study, site=site).first()
    if link is not None and link.removed_on is None:
        return link
    if link is None:
        link = StudySite(study=study, site=site, activated_on=activated_on)
    link.removed_on = None
    return study_site_save(link=link, reason=reason, actor=actor)


def study_remove_site(
    *, study: Study, site: Site, reason: str, on_date: dt.date | None = None, actor=None
) -> StudySite:
    """Remove `site` from `study` on `on_date` (the site's today by default), with a reason."""
    link = StudySite.objects.filter(study=study, site=site).first()
    if link is None or link.removed_on is not None:
        raise ValidationError(
            {
                "site": _("Site %(site)s does not take part in study %(study)s.")
                % {"site": site.code, "study": study.code}
            }
        )
    link.removed_on = on_date or site.today()
    return study_site_save(link=link, reason=reason, actor=actor)


def participation_check(
    *, site_id: int, study_id: int | None = None, study_code: str | None = None, field: str, removed_only: bool = False
) -> None:
    """Refuse a write for a study by a site that does not take part in it, or was removed from it. A study named
    by a code unknown at the site passes (the caller reports it as unknown), and so does a site never in the
    study when `removed_only` (a lot's manufacturing site need not treat patients of the study)."""
    links = StudySite.objects.filter(site_id=site_id)
    links = links.filter(study_id=study_id) if study_id is not None else links.filter(study__code=study_code)
    row = links.values("removed_on", "site__code", "study__code").first()
    if row is None:
        if study_id is None or removed_only:
            return
        participation_refuse(in_study=False, removed_on=None, site_code="", study_code="", field=field)
    participation_refuse(
        in_study=True,
        removed_on=row["removed_on"],
        site_code=row["site__code"],
        study_code=row["study__code"],
        field=field,
    )


def participation_annotations(*, study_ref: str, site_ref: str) -> dict:
    """Annotations that read a row's participation in the query that loads it (no query of its own):
    `in_study` and `removed_from_study_on`, for `participation_refuse`."""
    from django.db.models import Exists, OuterRef, Subquery

    links = StudySite.objects.filter(study_id=OuterRef(study_ref), site_id=OuterRef(site_ref))
    return {"in_study": Exists(links), "removed_from_study_on": Subquery(links.values("removed_on")[:1])}


def participation_refuse(
    *, in_study: bool, removed_on: dt.date | None, site_code: str, study_code: str, field: str
) -> None:
    """Raise the participation error, if any, of a site (`in_study`, `removed_on` as stored)."""
    if not in_study:
        raise ValidationError({field: _("This site does not take part in the study.")}, code="site_not_in_study")
    if removed_on is not None:
        raise ValidationError(
            {
                field: _(
                    "Site %(site)s was removed from study %(study)s on %(date)s; it can no longer record data for "
                    "the study (what it recorded stays readable)."
                )
                % {"site": site_code, "study": study_code, "date": removed_on.isoformat()}
            },
            code="site_removed",
        )


def study_check_enrolment(study: Study, *, field: str = "study") -> None:
    """Refuse a new patient (or the enrolment of a screened one) in a study that is not recruiting (its status
    as stored: the caller's copy may be older)."""
    study = Study.objects.get(pk=study.pk)
    if study.status not in c.ENROLLING_STATUSES:
        raise ValidationError(
            {
                field: _(
                    "Study %(study)s is %(status)s: it takes no new patients (patients are enrolled only while a "
                    "study is recruiting)."
                )
                % {"study": study.code, "status": str(study.get_status_display()).lower()}
            },
            code="study_not_recruiting",
        )


def study_check_infusions(study: Study, *, field: str = "study") -> None:
    """Refuse a new infusion in a study that is suspended, completed or terminated."""
    if study.status in c.NO_INFUSION_STATUSES:
        raise ValidationError(
            {
                field: _(
                    "Study %(study)s is %(status)s: no new infusions are given (the follow-up of its patients goes on)."
                )
                % {"study": study.code, "status": str(study.get_status_display()).lower()}
            },
            code="study_closed_to_infusions",
        )


@transaction.atomic
def membership_grant(*, user, site: Site, role: str) -> Membership:
    membership = Membership(user=user, site=site, role=role)
    membership.full_clean(validate_unique=False, validate_constraints=False)
    membership, _ = Membership.objects.get_or_create(user=user, site=site, role=role)
    return membership


# Follow-up template ------------------------------------------------------------------------------------


def schedule_check_windows(definitions: Iterable[VisitDefinition]) -> None:
    """Refuse a template in which two visits' windows overlap (a date must belong to one visit only)."""
    ordered = sorted(definitions, key=lambda d: d.offset_days)
    for earlier, later in zip(ordered, ordered[1:], strict=False):
        if later.window_first_day <= earlier.window_last_day:
            raise ValidationError(
                {
                    "window_before_days": (
                        f"Visit {later.code}'s window (days {later.window_first_day} to {later.window_last_day}) "
                        f"overlaps visit {earlier.code}'s (days {earlier.window_first_day} to "
                        f"{earlier.window_last_day}); windows in a template must not overlap."
                    )
                },
                code="window_overlap",
            )


@transaction.atomic
def visit_definition_save(*, definition: VisitDefinition) -> VisitDefinition:
    """Add or change one time point of a study's template, refusing overlapping windows."""
    full_clean_plain(definition)
    others = VisitDefinition.objects.filter(study=definition.study).exclude(pk=definition.pk)
    schedule_check_windows([*others, definition])
    definition.save()
    return definition


@transaction.atomic
def schedule_install_default(*, study: Study) -> list[VisitDefinition]:
    """Install the default template (docs/clinical-rules.md, "Follow-up schedule") for a study that has none yet
    (idempotent)."""
    if study.visit_definitions.exists():
        return list(study.visit_definitions.all())
    definitions = [
        VisitDefinition(
            study=study,
            code=code,
            label=label,
            label_zh=c.DEFAULT_VISIT_LABELS_ZH.get(code, ""),
            offset_days=offset,
            window_before_days=before,
            window_after_days=after,
            required_items=list(c.DEFAULT_REQUIRED_ITEMS) if code in c.DEFAULT_REQUIRED_AT else [],
        )
        for code, label, offset, before, after in c.DEFAULT_VISIT_TEMPLATE
    ]
    schedule_check_windows(definitions)
    for definition in definitions:
        definition.full_clean(validate_unique=False)
        definition.save()
    return definitions


# Donors and lots ---------------------------------------------------------------------------------------


@transaction.atomic
def donor_save(*, donor: Donor, actor=None, reason: str = "") -> Donor:
    ensure_can_write(actor, donor.site_id)
    if donor.pk is None and donor.site_id and donor.study_id:
        participation_check(site_id=donor.site_id, study_id=donor.study_id, field="site", removed_only=True)
    if donor.relation == c.DonorRelation.AUTOLOGOUS and donor.age_at_donation is None:
        raise ValidationError(
            {"age_at_donation": gettext("An autologous donor is the patient: give the age at donation.")}
        )
    return save_validated(donor, reason=reason)


def _criterion_met(value, op: str, threshold) -> bool:
    if op == "eq":
        return value == threshold
    value = Decimal(str(value))
    threshold = Decimal(str(threshold))
    return {"ge": value >= threshold, "le": value <= threshold, "lt": value < threshold}[op]


def lot_evaluate_release(lot: CellProduct) -> tuple[str, list[str]]:
    """Evaluate a lot against the ISCT minimal criteria and the lot tests: (status, failing criteria).

    A criterion with no result is reported as not tested and keeps the lot pending; a result that misses
    its threshold fails the lot.
    """
    failures: list[str] = []
    missing: list[str] = []
    for field, op, threshold, rule in c.RELEASE_CRITERIA:
        value = getattr(lot, field)
        if value is None or value == "":
            missing.append(f"{field}: not tested ({rule})")
        elif not _criterion_met(value, op, threshold):
            shown = "no" if value is False else value
            failures.append(f"{field}: {shown} ({rule})")
    if failures:
        return c.ReleaseStatus.FAILED, failures + missing
    if missing:
        return c.ReleaseStatus.PENDING, missing
    return c.ReleaseStatus.RELEASED, []


@transaction.atomic
def lot_save(*, lot: CellProduct, actor=None, reason: str = "") -> CellProduct:
    """Save a lot and its release tests; the release evaluation is recomputed on every save."""
    ensure_can_write(actor, lot.site_id)
    if lot.pk is None and lot.site_id and lot.study_id:
        participation_check(site_id=lot.site_id, study_id=lot.study_id, field="site", removed_only=True)
    errors = {}
    if lot.lot_number and CellProduct.objects.filter(lot_number=lot.lot_number).exclude(pk=lot.pk).exists():
        # The same words whoever holds the number: a site may not learn another's lot numbers.
        errors["lot_number"] = (
            f"Lot number {lot.lot_number} is not available: choose another (your site's own lots are listed by "
            "the API and the admin)."
        )
    if lot.donor_id and lot.donor.study_id != lot.study_id:
        errors["donor"] = "The donor belongs to another study."
    if lot.origin == c.ProductOrigin.AUTOLOGOUS and lot.donor_id and lot.donor.relation != c.DonorRelation.AUTOLOGOUS:
        errors["origin"] = "An autologous product needs an autologous donor."
    if lot.origin == c.ProductOrigin.ALLOGENEIC and lot.donor_id and lot.donor.relation == c.DonorRelation.AUTOLOGOUS:
        errors["origin"] = "An autologous donor cannot give an allogeneic product."
    if lot.site_id:
        site = lot.site
        errors.update(horizon_errors(site.today(), cryopreserved_on=lot.cryopreserved_on, expires_on=lot.expires_on))
    if errors:
        raise ValidationError(errors)
    lot.release_status, lot.release_failures = lot_evaluate_release(lot)
    return save_validated(lot, reason=reason)


def lot_check_infusable(lot: CellProduct, *, on_date: dt.date) -> None:
    """Refuse a lot that is not released, or not usable on `on_date`, naming the criterion."""
    if lot.release_status == c.ReleaseStatus.FAILED:
        raise ValidationError(
            {"lot": f"Lot {lot.lot_number} failed release and cannot be infused: " + "; ".join(lot.release_failures)},
            code="lot_failed",
        )
    if lot.release_status != c.ReleaseStatus.RELEASED:
        raise ValidationError(
            {"lot": f"Lot {lot.lot_number} is not released (tests missing): " + "; ".join(lot.release_failures)},
            code="lot_not_released",
        )
    if on_date > lot.expires_on:
        raise ValidationError(
            {
                "lot": f"Lot {lot.lot_number} expired on {lot.expires_on.isoformat()}; infusion date {on_date.isoformat()}."
            },
            code="lot_expired",
        )
    if on_date < lot.cryopreserved_on:
        raise ValidationError(
            {
                "lot": f"Lot {lot.lot_number} was cryopreserved on {lot.cryopreserved_on.isoformat()}, after the infusion date."
            },
            code="lot_not_yet_made",
        )
