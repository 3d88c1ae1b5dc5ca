"""Text starting with a tab or a carriage return, at every door where text starting like a spreadsheet formula
is refused (each model's PLAIN_TEXT_FIELDS; core/spreadsheets.py).

A form or serializer trims white space before the service sees the text. Trimmed, a tab followed by "=cmd"
would reach the service as "=cmd" (refused for the wrong character) and a tab followed by "cmd" as "cmd"
(accepted, altered). Here every plain-text field of every door keeps the leading tab or carriage return, and
the refusal names the field and says "a tab" or "a carriage return": the services (the door of commands and
batches), the admin's forms, and the partner API's write operations (found in the OpenAPI schema).
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError

from core.api.etags import etag_of
from tests.api.conftest import SHARED_STUDY, SUBJECT_A, adverse_event_payload, call, client_for, medication_payload
from tests.reporting import test_spreadsheet_injection as injection

pytestmark = pytest.mark.django_db

# (text sent, what the refusal says it starts with)
TEXTS = [
    ("\t=cmd", "a tab"),
    ("\r=cmd", "a carriage return"),
    ("\tcmd", "a tab"),
    ("\rcmd", "a carriage return"),
    ("  \t@SUM(A1)", "a tab"),
    ("\n\r-2+3", "a carriage return"),
]
IDS = ["tab=", "cr=", "tab", "cr", "spaces-tab", "newline-cr"]


def _plain_fields():
    """(label, model, field name) of every plain-text field."""
    for label in sorted(injection.plain_text_labels()):
        model_label, name = label.rsplit(".", 1)
        from django.apps import apps

        yield label, apps.get_model(model_label), name


@pytest.mark.parametrize(("text", "shown"), TEXTS[:4], ids=IDS[:4])  # a service takes text as given
def test_every_plain_text_field_is_refused_by_its_service(frozen_now, monkeypatch, text, shown):
    writers = {
        (k if isinstance(k, str) else k._meta.label): v
        for k, v in injection._writers(injection.make_clinical()).items()
    }
    monkeypatch.setattr(injection, "HOSTILE", text)
    refused = []
    for label, model, name in _plain_fields():
        with pytest.raises(ValidationError) as caught:
            writers[model._meta.label](name)
        messages = caught.value.message_dict.get(name, [])
        assert any(f"starts with {shown}" in m for m in messages), (label, caught.value.message_dict)
        refused.append(label)
    assert len(refused) == 14


@pytest.mark.parametrize(("text", "shown"), TEXTS, ids=IDS)
def test_the_admin_forms_keep_a_leading_tab_or_carriage_return_for_the_service(rf, text, shown):
    """Every admin form that edits a plain-text field refuses the text or hands it to its service with its first
    character; a field no admin form edits is listed (shown read only, or written by a service only)."""
    from tests.factories import make_superuser

    request = rf.get("/admin/")
    request.user = make_superuser("formula-admin")
    not_in_a_form = set()
    kept = []
    for label, model, name in _plain_fields():
        model_admin = admin.site.get_model_admin(model)
        form = model_admin.get_form(request)()
        field = form.fields.get(name)
        if field is None:
            not_in_a_form.add(label)
            continue
        try:
            cleaned = field.clean(text)
        except ValidationError:  # refused at the field already (an e-mail address)
            kept.append(label)
            continue
        assert cleaned.startswith(("\t", "\r")), (label, cleaned)
        kept.append(label)
    assert not_in_a_form == {"followup.Visit.label"}  # read only: an unscheduled visit is named by its service
    assert len(kept) == 13


def test_the_admin_refuses_an_adverse_event_term_starting_with_a_tab_beside_the_field(client, frozen_now):
    from followup.models import AdverseEvent
    from tests.factories import make_clinical, make_superuser

    clinical = make_clinical()
    client.force_login(make_superuser("ae-admin"))
    response = client.post(
        "/admin/followup/adverseevent/add/",
        {
            "patient": clinical.patient.pk,
            "term": "\tcmd",
            "category": "other",
            "onset_date": "2025-05-01",
            "grade": 1,
            "relatedness": "unlikely",
            "expected": "on",
            "aware_date": "2025-05-01",
            "outcome": "recovered",
            "action_taken": "none",
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any("starts with a tab" in message for message in errors["term"]), errors
    assert not AdverseEvent.objects.exists()


# The partner API -----------------------------------------------------------------------------------------


def _api_plain_text_writes() -> set[tuple[str, str, str]]:
    """(method, path, property) of every write operation of the schema whose body has a plain-text field."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    names = {name for _, _, name in _plain_fields()}
    components = schema["components"]["schemas"]
    found = set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if method not in ("post", "put", "patch") or not body:
                continue
            properties = components[body["$ref"].rsplit("/", 1)[1]].get("properties", {})
            found |= {(method.upper(), path, name) for name in properties if name in names}
    return found


def _api_writes(world):
    ae, medication = world.a.adverse_event, world.a.medication

    def ae_create(text):
        return "POST", "/api/v1/adverse-events/", adverse_event_payload(SHARED_STUDY, SUBJECT_A, term=text), {}

    def ae_update(text):
        ae.refresh_from_db()
        url = f"/api/v1/adverse-events/{ae.pk}/"
        return "PATCH", url, {"term": text, "reason": "Term corrected"}, {"If-Match": etag_of(ae)}

    def medication_create(text):
        payload = medication_payload(SHARED_STUDY, SUBJECT_A, drug="other", drug_other=text)
        return "POST", "/api/v1/medications/", payload, {}

    assert medication.pk
    return {
        ("POST", "/api/v1/adverse-events/", "term"): ae_create,
        ("PATCH", "/api/v1/adverse-events/{id}/", "term"): ae_update,
        ("POST", "/api/v1/medications/", "drug_other"): medication_create,
    }


@pytest.mark.parametrize(("text", "shown"), TEXTS, ids=IDS)
def test_every_plain_text_field_of_the_api_is_refused_naming_the_field(world, text, shown):
    writes = _api_writes(world)
    assert set(writes) == _api_plain_text_writes(), "a write operation takes plain text: add it here"
    client = client_for(world.keys["a_rw"])
    for (_, _, name), build in writes.items():
        method, url, payload, headers = build(text)
        response = call(client, method, url, payload, **headers)
        assert response.status_code == 400, (url, response.status_code, response.content)
        errors = [e for e in response.json()["errors"] if e["field"] == name]
        assert any(f"starts with {shown}" in e["message"] for e in errors), (url, response.json())


def test_spaces_around_ordinary_text_are_still_trimmed(world):
    response = call(
        client_for(world.keys["a_rw"]),
        "POST",
        "/api/v1/adverse-events/",
        adverse_event_payload(SHARED_STUDY, SUBJECT_A, term="  Herpes zoster \t"),
    )
    assert response.status_code == 201, response.content
    assert response.json()["term"] == "Herpes zoster"
