"""Freezes: a data manager names a point in time of a study. The export and the cohort report are captured
at that moment (by `reporting.freezes`, which receives `freeze_taken`) and kept with their SHA-256; asking
for them "as of the freeze" later serves those bytes, and `freeze_verify` proves they are unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone
from django.utils.translation import gettext as _

from quality.models import Freeze
from quality.services.review import role_site_ids
from registry.constants import Role
from registry.models import Study, user_site_ids

# Sent inside the freeze's transaction with `freeze`: a receiver captures what the freeze keeps (the export
# zip and the report), so a failure to capture leaves no freeze.
freeze_taken = Signal()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@transaction.atomic
def freeze_create(*, study: Study, name: str, actor) -> Freeze:
    """Freeze the study now, for the sites of the study where the actor is a data manager (a superuser: all)."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": _("Name the freeze (e.g. 'Interim analysis 2026').")})
    sites = set(study.study_sites.values_list("site_id", flat=True))
    mine = role_site_ids(actor, Role.DATA_MANAGER) if actor.is_active else set()
    if mine is not None:
        sites &= mine
    if not sites:
        raise PermissionDenied(_("Only a data manager of a site of the study can freeze it."))
    if Freeze.objects.filter(study=study, name=name).exists():
        raise ValidationError(
            {"name": _("Study %(study)s already has a freeze named '%(name)s'.") % {"study": study.code, "name": name}}
        )
    freeze = Freeze.objects.create(
        study=study, name=name, site_ids=sorted(sites), frozen_at=timezone.now(), frozen_by=actor
    )
    freeze_taken.send(sender=Freeze, freeze=freeze)
    if not freeze.export_sha256 or not freeze.report_sha256:
        raise RuntimeError("the freeze's export and report were not captured")
    return freeze


def freezes_for_user(user):
    """The freezes whose every site is one of the user's sites (superusers: all)."""
    if not user or not user.is_authenticated or not user.is_active:
        return Freeze.objects.none()
    if user.is_superuser:
        return Freeze.objects.all()
    mine = set(user_site_ids(user).values_list("site_id", flat=True))
    ids = [pk for pk, site_ids in Freeze.objects.values_list("pk", "site_ids") if set(site_ids) <= mine]
    return Freeze.objects.filter(pk__in=ids)


def freeze_export_bytes(freeze: Freeze) -> bytes:
    return Path(freeze.export_path).read_bytes()


def freeze_verify(freeze: Freeze) -> dict[str, bool]:
    """Whether the kept export and report still have the SHA-256 they had when frozen."""
    path = Path(freeze.export_path)
    return {
        "export": path.is_file() and file_sha256(path) == freeze.export_sha256,
        "report": sha256_of(freeze.report_csv.encode()) == freeze.report_sha256,
    }
