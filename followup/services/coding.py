"""MedDRA: loading a centre's own release, and coding an adverse event's term to a lowest level term (LLT),
which brings its preferred term (PT) and the PT's primary path (HLT, HLGT, primary SOC) onto the event with
the MedDRA version. The term stays as entered (docs/clinical-rules.md, "Coding adverse events to MedDRA")."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext

from followup.meddra import read_release
from followup.models import AdverseEvent, MedDRARelease, MedDRATerm

HIERARCHY = (
    ("llt_code", "meddra_llt_code"),
    ("llt_name", "meddra_llt"),
    ("pt_code", "meddra_pt_code"),
    ("pt_name", "meddra_pt"),
    ("hlt_code", "meddra_hlt_code"),
    ("hlt_name", "meddra_hlt"),
    ("hlgt_code", "meddra_hlgt_code"),
    ("hlgt_name", "meddra_hlgt"),
    ("soc_code", "meddra_soc_code"),
    ("soc_name", "meddra_soc"),
)
MEDDRA_FIELDS = ("meddra_term", "meddra_version", *(field for _, field in HIERARCHY))


@transaction.atomic
def meddra_release_load(*, directory: Path | str, version: str, language: str = "English", encoding: str = "utf-8"):
    """Load the release in `directory` (its MedAscii files) as MedDRA `version`; it becomes the release new
    codings use. A version already loaded is refused: its terms may be on coded events."""
    version = version.strip()
    if not version:
        raise ValidationError({"version": gettext("Give the MedDRA version of the release, e.g. 27.1.")})
    if MedDRARelease.objects.filter(version=version).exists():
        raise ValidationError({"version": gettext("MedDRA %(version)s is already loaded.") % {"version": version}})
    terms = read_release(Path(directory), encoding=encoding)
    release = MedDRARelease.objects.create(version=version, language=language)
    MedDRATerm.objects.bulk_create((MedDRATerm(release=release, **term.__dict__) for term in terms), batch_size=5000)
    return release


def meddra_current_release() -> MedDRARelease | None:
    """The release loaded last: the one new codings use."""
    return MedDRARelease.objects.order_by("-loaded_at", "-pk").first()


def meddra_apply(ae: AdverseEvent, *, stored_term_id: int | None) -> bool:
    """Bring the hierarchy of the chosen LLT onto `ae` when the choice changed (or clear it when the LLT was
    taken off). A new choice must be a current LLT of the current release. Returns whether the coding changed."""
    if ae.meddra_term_id == stored_term_id:
        return False
    if ae.meddra_term_id is None:
        ae.meddra_version = ""
        for _, field in HIERARCHY:
            setattr(ae, field, "" if not field.endswith("_code") else None)
        return True
    term = MedDRATerm.objects.select_related("release").get(pk=ae.meddra_term_id)
    current = meddra_current_release()
    if current is None or term.release_id != current.pk:
        raise ValidationError(
            {
                "meddra_term": gettext(
                    "LLT %(code)s is from MedDRA %(version)s; code with the current release (%(current)s)."
                )
                % {
                    "code": term.llt_code,
                    "version": term.release.version,
                    "current": current.version if current else "-",
                }
            }
        )
    if not term.current:
        raise ValidationError(
            {
                "meddra_term": gettext(
                    "LLT %(code)s (%(name)s) is not current in MedDRA %(version)s; choose a current term."
                )
                % {"code": term.llt_code, "name": term.llt_name, "version": term.release.version}
            }
        )
    ae.meddra_version = term.release.version
    for source, field in HIERARCHY:
        setattr(ae, field, getattr(term, source))
    return True
