"""MedDRA (docs/clinical-rules.md, "Coding adverse events to MedDRA"): a centre's release loaded from the ASCII
distribution by `load_meddra` (here a made-up dictionary in the same layout, tests/followup/meddra_sample/),
an adverse event coded to an LLT by a data manager, its PT and primary path stored with the version, the term
kept as entered, and uncoded events on the worklist."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from followup import constants as c
from followup.meddra import read_release
from followup.models import AdverseEvent, MedDRARelease, MedDRATerm
from followup.selectors import worklist
from followup.services import ae_code_meddra, ae_record, ae_save, meddra_release_load
from registry import constants as rc
from tests.factories import make_clinical, make_user

pytestmark = pytest.mark.django_db

SAMPLE = Path(__file__).parent / "meddra_sample"
SHINGLES, OLD_SHINGLES, ITCHY_RASH = 94000001, 94000002, 94000003


@pytest.fixture
def clinical():
    return make_clinical()


@pytest.fixture
def release():
    return meddra_release_load(directory=SAMPLE, version="99.0")


def an_event(clinical, **overrides) -> AdverseEvent:
    fields = {
        "term": "Shingles, left flank",
        "category": c.AECategory.INFECTION,
        "onset_date": dt.date(2025, 5, 8),
        "aware_date": dt.date(2025, 5, 10),
        "grade": c.CTCAEGrade.MODERATE,
        "relatedness": c.Relatedness.UNLIKELY,
        "expected": True,
    }
    return ae_record(patient=clinical.patient, **{**fields, **overrides})


def errors_of(excinfo) -> dict[str, str]:
    return {key: " ".join(value) for key, value in excinfo.value.message_dict.items()}


# Reading and loading a release ---------------------------------------------------------------------------


def test_reading_the_ascii_files_gives_each_llt_its_pt_and_the_primary_path_only():
    terms = {t.llt_code: t for t in read_release(SAMPLE)}
    assert set(terms) == {93000001, SHINGLES, OLD_SHINGLES, 93000002, ITCHY_RASH}
    shingles = terms[SHINGLES]
    # PT 93000001 also sits under the skin SOC (secondary path): the primary one is taken.
    assert (shingles.pt_code, shingles.hlt_code, shingles.hlgt_code, shingles.soc_code) == (
        93000001,
        92000001,
        91000001,
        90000001,
    )
    assert shingles.soc_name == "Invented infections SOC" and shingles.current
    assert not terms[OLD_SHINGLES].current


def test_load_meddra_command_loads_the_release_and_refuses_the_same_version_twice(capsys):
    call_command("load_meddra", str(SAMPLE), "--version", "99.0")
    assert "99.0" in capsys.readouterr().out
    release = MedDRARelease.objects.get()
    assert release.version == "99.0" and release.terms.count() == 5
    with pytest.raises(CommandError, match="already loaded"):
        call_command("load_meddra", str(SAMPLE), "--version", "99.0")
    assert MedDRATerm.objects.count() == 5


def test_a_release_whose_files_disagree_is_refused_naming_the_file_and_line(tmp_path):
    broken = tmp_path / "MedAscii"
    shutil.copytree(SAMPLE, broken)
    # pt.asc names the skin SOC as PT 93000001's primary SOC; mdhier.asc says infections.
    text = (
        (broken / "pt.asc")
        .read_text()
        .replace("93000001$Invented zoster PT$$90000001", "93000001$Invented zoster PT$$90000002")
    )
    (broken / "pt.asc").write_text(text)
    with pytest.raises(ValidationError) as excinfo:
        meddra_release_load(directory=broken, version="99.1")
    message = errors_of(excinfo)["directory"]
    assert message.startswith("mdhier.asc, line 1:") and "pt.asc" in message
    assert not MedDRARelease.objects.exists()


def test_a_missing_file_is_named(tmp_path):
    broken = tmp_path / "MedAscii"
    shutil.copytree(SAMPLE, broken)
    (broken / "hlt_pt.asc").unlink()
    with pytest.raises(ValidationError) as excinfo:
        meddra_release_load(directory=broken, version="99.1")
    assert "hlt_pt.asc" in errors_of(excinfo)["directory"]


# Coding an event ---------------------------------------------------------------------------------------


def test_coding_stores_llt_pt_and_primary_path_with_the_version_and_keeps_the_term(clinical, release):
    ae = an_event(clinical)
    coded = ae_code_meddra(ae=ae, llt_code=SHINGLES)
    coded.refresh_from_db()
    assert coded.term == "Shingles, left flank"
    assert (coded.meddra_version, coded.meddra_llt_code, coded.meddra_llt) == (
        "99.0",
        SHINGLES,
        "Invented shingles LLT",
    )
    assert (coded.meddra_pt_code, coded.meddra_pt) == (93000001, "Invented zoster PT")
    assert (coded.meddra_hlt_code, coded.meddra_hlgt_code) == (92000001, 91000001)
    assert (coded.meddra_soc_code, coded.meddra_soc) == (90000001, "Invented infections SOC")
    assert coded.history.first().history_change_reason.startswith("coded to MedDRA 99.0 LLT 94000001")


def test_a_non_current_llt_or_an_unknown_code_is_refused(clinical, release):
    ae = an_event(clinical)
    with pytest.raises(ValidationError) as excinfo:
        ae_code_meddra(ae=ae, llt_code=OLD_SHINGLES)
    assert "not current" in errors_of(excinfo)["meddra_term"]
    with pytest.raises(ValidationError) as excinfo:
        ae_code_meddra(ae=ae, llt_code=12345)
    assert "12345 is not an LLT code of MedDRA 99.0" in errors_of(excinfo)["meddra_term"]
    ae.refresh_from_db()
    assert ae.meddra_llt_code is None and ae.meddra_version == ""


def test_coding_without_a_loaded_release_says_to_load_one(clinical):
    with pytest.raises(ValidationError) as excinfo:
        ae_code_meddra(ae=an_event(clinical), llt_code=SHINGLES)
    assert "load_meddra" in errors_of(excinfo)["meddra_term"]


def test_recoding_and_uncoding_through_the_event_save(clinical, release):
    ae = ae_code_meddra(ae=an_event(clinical), llt_code=SHINGLES)
    ae.meddra_term = MedDRATerm.objects.get(llt_code=ITCHY_RASH)
    ae_save(ae=ae, reason="recoded: a rash, not zoster")
    ae.refresh_from_db()
    assert (ae.meddra_pt, ae.meddra_soc) == ("Invented rash PT", "Invented skin SOC")
    ae.meddra_term = None
    ae_save(ae=ae, reason="coding withdrawn")
    ae.refresh_from_db()
    assert ae.meddra_llt_code is None and ae.meddra_soc == "" and ae.meddra_version == ""


def test_a_term_of_an_older_release_cannot_be_chosen_once_a_newer_one_is_loaded(clinical, release):
    old_term = MedDRATerm.objects.get(release=release, llt_code=SHINGLES)
    meddra_release_load(directory=SAMPLE, version="99.1")
    ae = an_event(clinical)
    ae.meddra_term = old_term
    with pytest.raises(ValidationError) as excinfo:
        ae_save(ae=ae, reason="coding")
    assert "current release (99.1)" in errors_of(excinfo)["meddra_term"]


def test_coding_at_another_site_is_refused(clinical, release):
    outsider = make_user("meddra-outsider", make_clinical().site, role=rc.Role.DATA_MANAGER)
    with pytest.raises(ValidationError) as excinfo:
        ae_code_meddra(ae=an_event(clinical), llt_code=SHINGLES, actor=outsider)
    assert "patient" in errors_of(excinfo)


@pytest.mark.parametrize("role", [rc.Role.COORDINATOR, rc.Role.INVESTIGATOR])
def test_only_a_data_manager_of_the_site_codes_an_event_through_the_coding_door(clinical, release, role):
    writer = make_user(f"meddra-{role}", clinical.site, role=role)
    ae = an_event(clinical)
    with pytest.raises(ValidationError) as excinfo:
        ae_code_meddra(ae=ae, llt_code=SHINGLES, actor=writer)
    assert "data manager" in errors_of(excinfo)["meddra_term"]
    ae.refresh_from_db()
    assert ae.meddra_term_id is None and ae.meddra_llt_code is None
    manager = make_user("meddra-dm-door", clinical.site, role=rc.Role.DATA_MANAGER)
    assert ae_code_meddra(ae=ae, llt_code=SHINGLES, actor=manager).meddra_llt_code == SHINGLES


def test_only_a_data_manager_of_the_site_codes_or_uncodes_an_event_through_its_page(clinical, release):
    """The admin's door: the event saved with another LLT (ae_save), by a coordinator, then a data manager."""
    coordinator = make_user("meddra-coord-page", clinical.site, role=rc.Role.COORDINATOR)
    manager = make_user("meddra-dm-page", clinical.site, role=rc.Role.DATA_MANAGER)
    ae = an_event(clinical)
    ae.meddra_term = MedDRATerm.objects.get(release=release, llt_code=SHINGLES)
    with pytest.raises(ValidationError) as excinfo:
        ae_save(ae=ae, actor=coordinator, reason="coding")
    assert "data manager" in errors_of(excinfo)["meddra_term"]
    ae = ae_save(ae=ae, actor=manager, reason="coding")
    assert ae.meddra_llt_code == SHINGLES
    # The coordinator still edits the rest of a coded event, and cannot take the coding off.
    ae.grade = c.CTCAEGrade.SEVERE
    ae = ae_save(ae=ae, actor=coordinator, reason="grade corrected")
    assert ae.meddra_llt_code == SHINGLES
    ae.meddra_term = None
    with pytest.raises(ValidationError) as excinfo:
        ae_save(ae=ae, actor=coordinator, reason="uncoding")
    assert "meddra_term" in errors_of(excinfo)


# The worklist ------------------------------------------------------------------------------------------


def test_uncoded_events_are_on_the_data_managers_worklist_once_a_release_is_loaded(clinical, frozen_now):
    manager = make_user("meddra-dm", clinical.site, role=rc.Role.DATA_MANAGER)
    ae = an_event(clinical)
    other = an_event(clinical, term="Itchy rash")
    assert worklist(user=manager)["uncoded"] == []  # no dictionary: nothing can be coded yet
    meddra_release_load(directory=SAMPLE, version="99.0")
    assert [a.pk for a in worklist(user=manager)["uncoded"]] == [ae.pk, other.pk]
    ae_code_meddra(ae=ae, llt_code=SHINGLES, actor=manager)
    assert [a.pk for a in worklist(user=manager)["uncoded"]] == [other.pk]
    outsider = make_user("meddra-outsider-dm", make_clinical().site, role=rc.Role.DATA_MANAGER)
    assert worklist(user=outsider)["uncoded"] == []


def test_the_coding_section_counts_every_uncoded_event_and_is_a_data_managers_only(client, clinical, release):
    """The section shows its first rows and the true total, its link lists them all; a coordinator of the site,
    who may not code, is not given the task."""
    manager = make_user("meddra-dm-all", clinical.site, role=rc.Role.DATA_MANAGER)
    coordinator = make_user("meddra-coord-all", clinical.site, role=rc.Role.COORDINATOR)
    events = [an_event(clinical, term=f"Event {n}", onset_date=dt.date(2025, 5, 1 + n)) for n in range(3)]
    first = worklist(user=manager, rows=2)
    assert [a.pk for a in first["uncoded"]] == [e.pk for e in events[:2]] and first["totals"]["uncoded"] == 3
    assert worklist(user=coordinator)["uncoded"] == [] and worklist(user=coordinator)["totals"]["uncoded"] == 0

    client.force_login(manager)
    response = client.get("/admin/followup/adverseevent/", {"to_code": "yes"})
    assert [a.pk for a in response.context["cl"].result_list] == [e.pk for e in events]  # oldest onset first
    client.force_login(coordinator)
    response = client.get("/admin/followup/adverseevent/", {"to_code": "yes"})
    assert list(response.context["cl"].result_list) == []


# The admin: the coding field with its autocomplete ------------------------------------------------------


def test_the_llt_autocomplete_finds_current_terms_of_the_current_release_by_name(client, clinical, release):
    manager = make_user("meddra-dm-ac", clinical.site, role=rc.Role.DATA_MANAGER)
    client.force_login(manager)
    response = client.get(
        "/admin/autocomplete/",
        {"term": "shingles", "app_label": "followup", "model_name": "adverseevent", "field_name": "meddra_term"},
    )
    assert response.status_code == 200
    found = [r["text"] for r in response.json()["results"]]
    assert found == ["Invented shingles LLT (94000001) - PT Invented zoster PT - SOC Invented infections SOC"]


def post_coding(client, user, ae: AdverseEvent):
    """Save the event's admin page as `user`, with the shingles LLT chosen."""
    client.force_login(user)
    url = f"/admin/followup/adverseevent/{ae.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update(
        expected="on",
        meddra_term=MedDRATerm.objects.get(llt_code=SHINGLES).pk,
        reason="coded to MedDRA",
        _save="Save",
    )
    data.pop("pre_treatment", None)
    for name in [n for n, v in data.items() if v is False]:
        data.pop(name)
    return client.post(url, data)


def test_a_data_manager_codes_an_event_on_its_admin_page(client, clinical, release):
    manager = make_user("meddra-dm-admin", clinical.site, role=rc.Role.DATA_MANAGER)
    ae = an_event(clinical)
    response = post_coding(client, manager, ae)
    assert response.status_code == 302, response.context["adminform"].form.errors
    ae.refresh_from_db()
    assert (ae.term, ae.meddra_llt_code, ae.meddra_soc_code) == ("Shingles, left flank", SHINGLES, 90000001)
    url = f"/admin/followup/adverseevent/{ae.pk}/change/"
    assert "LLT 94000001 Invented shingles LLT" in client.get(url).content.decode()


def test_a_coordinator_sees_the_coding_read_only_and_cannot_code_an_event_on_its_admin_page(client, clinical, release):
    coordinator = make_user("meddra-coord-admin", clinical.site, role=rc.Role.COORDINATOR)
    ae = an_event(clinical)
    client.force_login(coordinator)
    url = f"/admin/followup/adverseevent/{ae.pk}/change/"
    page = client.get(url).content.decode()
    assert 'name="meddra_term"' not in page and "field-meddra_term" in page  # shown, not offered
    manager = make_user("meddra-dm-sees", clinical.site, role=rc.Role.DATA_MANAGER)
    client.force_login(manager)
    assert 'name="meddra_term"' in client.get(url).content.decode()

    history = ae.history.count()

    response = post_coding(client, coordinator, ae)  # the field added to the page by hand

    # Refused with the rule's words, not dropped without a word while the rest saves.
    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert errors == [
        "MedDRA lowest level term: Only a data manager of the patient's site can code an adverse event to MedDRA."
    ]
    ae.refresh_from_db()
    assert ae.meddra_term_id is None and ae.meddra_llt_code is None and ae.history.count() == history
    # Without the added field the coordinator's page saves as before.
    client.force_login(coordinator)
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() not in (None, False)}
    response = client.post(url, {**data, "expected": "on", "reason": "description added", "_save": "Save"})
    assert response.status_code == 302
