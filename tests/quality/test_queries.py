"""Queries raised by hand: who may raise, answer, close and re-open them (site by site), which state each step
starts from, and what the thread keeps (who, the door, the text, the value then)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import transaction

from core.audit import Door, audit_context
from followup.models import Result
from followup.services import visit_record
from quality.constants import MessageKind, QueryState
from quality.models import Query, QueryMessage
from quality.services.edit_checks import run_edit_checks
from quality.services.queries import message_text, query_answer, query_close, query_raise, query_reopen, value_of
from registry.constants import Role
from tests.concurrency import released_together
from tests.factories import make_clinical, make_site, make_user

pytestmark = pytest.mark.django_db

SETUP = dt.datetime(2025, 10, 1, 12, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai"))


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(SETUP, tick=True):
        yield


@pytest.fixture
def clinical():
    clinical = make_clinical()
    visit_record(
        visit=clinical.visit("M1"),
        actual_date=dt.date(2025, 4, 2),
        results={"CREAT": ("88", None)},
        status="in_progress",
    )
    return clinical


@pytest.fixture
def people(clinical):
    site = clinical.site
    other = make_site("OTHER", name="Other Hospital", country="CN", time_zone="Asia/Shanghai")
    return {
        "monitor": make_user("mon", site, role=Role.MONITOR),
        "dm": make_user("dm", site, role=Role.DATA_MANAGER),
        "coordinator": make_user("coord", site, role=Role.COORDINATOR),
        "investigator": make_user("inv", site, role=Role.INVESTIGATOR),
        "other_monitor": make_user("mon_other", other, role=Role.MONITOR),
        "other_coordinator": make_user("coord_other", other, role=Role.COORDINATOR),
    }


def creatinine(clinical) -> Result:
    return Result.objects.get(visit=clinical.visit("M1"), code="CREAT")


def test_monitor_raises_coordinator_answers_monitor_closes(clinical, people):
    result = creatinine(clinical)
    with audit_context(door=Door.ADMIN, user=people["monitor"]):
        query = query_raise(
            target=result, field="CREAT", text="88 umol/L: source says 8.8 mg/dL?", actor=people["monitor"]
        )
    assert (query.state, query.patient_id, query.study_id) == (QueryState.OPEN, clinical.patient.pk, clinical.study.pk)
    with audit_context(door=Door.ADMIN, user=people["coordinator"]):
        query = query_answer(query=query, text="Checked: the value is right.", actor=people["coordinator"])
    assert query.state == QueryState.ANSWERED and query.answered_at is not None
    query = query_close(query=query, actor=people["monitor"])
    assert query.state == QueryState.CLOSED
    thread = list(query.messages.values_list("kind", "actor", "door", "value"))
    assert thread == [
        (MessageKind.RAISED, "mon", Door.ADMIN, "88 umol/L"),
        (MessageKind.ANSWER, "coord", Door.ADMIN, "88 umol/L"),
        (MessageKind.CLOSE, "mon", Door.SYSTEM, "88 umol/L"),
    ]
    assert query.history.count() == 3


def test_a_close_without_a_note_reads_in_the_readers_language(clinical, people):
    """Closed by a Chinese-speaking monitor or through the API, the note the registry writes is stored once, in
    English, and each reader sees it in their own language; a note someone wrote stays as written."""
    from django.utils import translation

    first = query_raise(target=clinical.patient, field="birth_year", text="Year of birth?", actor=people["monitor"])
    with translation.override("zh-hans"):
        query_close(query=first, actor=people["monitor"])
    [note] = first.messages.filter(kind=MessageKind.CLOSE)
    assert note.text == "Closed."
    with translation.override("zh-hans"):
        assert message_text(note) == "已关闭。"
        assert message_text(first.messages.get(kind=MessageKind.RAISED)) == "Year of birth?"
    with translation.override("en"):
        assert message_text(note) == "Closed."


def test_the_thread_keeps_the_value_at_each_message(clinical, people):
    query = query_raise(target=clinical.visit("M1"), field="CREAT", text="Please check", actor=people["dm"])
    visit_record(
        visit=clinical.visit("M1"),
        actual_date=dt.date(2025, 4, 2),
        results={"CREAT": ("80", None)},
        status="in_progress",
        reason="Corrected from the source",
    )
    query_answer(query=query, text="Corrected", actor=people["coordinator"])
    assert list(query.messages.values_list("value", flat=True)) == ["88 umol/L", "80 umol/L"]


def test_reopen_needs_a_reason_and_goes_back_to_open(clinical, people):
    query = query_raise(target=clinical.patient, field="birth_year", text="Year of birth?", actor=people["monitor"])
    query_answer(query=query, text="1990 per ID card", actor=people["investigator"])
    with pytest.raises(ValidationError) as caught:
        query_reopen(query=query, actor=people["monitor"], text="  ")
    assert "text" in caught.value.message_dict
    query = query_reopen(query=query, actor=people["monitor"], text="The ID card says 1991")
    assert query.state == QueryState.OPEN and query.answered_at is None
    query_close(query=query, actor=people["dm"], text="Accepted")
    query = query_reopen(query=query, actor=people["dm"], text="Needs another look")
    assert query.state == QueryState.OPEN and query.resolution == ""


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("answer twice", "Only an open query can be answered; this one is Answered."),
        ("close closed", "Only an open or answered query can be closed; this one is Closed."),
        ("reopen open", "Only an answered or closed query can be re-opened; this one is Open."),
    ],
)
def test_bad_transitions_name_the_state(clinical, people, step, message):
    query = query_raise(target=clinical.patient, text="Check", actor=people["monitor"])
    with pytest.raises(ValidationError) as caught:
        if step == "answer twice":
            query_answer(query=query, text="a", actor=people["coordinator"])
            query_answer(query=query, text="b", actor=people["coordinator"])
        elif step == "close closed":
            query_close(query=query, actor=people["monitor"])
            query_close(query=query, actor=people["monitor"])
        else:
            query_reopen(query=query, actor=people["monitor"], text="why")
    assert caught.value.message_dict["state"] == [message]


@pytest.mark.parametrize("who", ["coordinator", "investigator", "other_monitor", "other_coordinator"])
def test_only_the_sites_monitor_or_data_manager_raises(clinical, people, who):
    with pytest.raises(ValidationError) as caught:
        query_raise(target=clinical.patient, text="Check", actor=people[who])
    assert "monitor or data manager" in caught.value.message_dict["target"][0]
    assert Query.objects.count() == 0


@pytest.mark.parametrize("who", ["monitor", "other_coordinator", "other_monitor"])
def test_only_the_sites_coordinator_investigator_or_data_manager_answers(clinical, people, who):
    query = query_raise(target=clinical.patient, text="Check", actor=people["dm"])
    with pytest.raises(ValidationError) as caught:
        query_answer(query=query, text="Fine", actor=people[who])
    assert "coordinator, investigator or data manager" in caught.value.message_dict["state"][0]


@pytest.mark.parametrize("who", ["coordinator", "investigator", "other_monitor"])
def test_only_the_sites_monitor_or_data_manager_closes(clinical, people, who):
    query = query_raise(target=clinical.patient, text="Check", actor=people["dm"])
    with pytest.raises(ValidationError) as caught:
        query_close(query=query, actor=people[who])
    assert "monitor or data manager" in caught.value.message_dict["state"][0]
    query.refresh_from_db()
    assert query.state == QueryState.OPEN


def test_a_field_the_record_does_not_have_is_refused(clinical, people):
    with pytest.raises(ValidationError) as caught:
        query_raise(target=clinical.visit("M1"), field="FOO", text="?", actor=people["monitor"])
    assert caught.value.message_dict["field"] == ["FOO is not a field or item of this visit."]


def test_an_empty_or_huge_message_is_refused(clinical, people):
    with pytest.raises(ValidationError) as caught:
        query_raise(target=clinical.patient, text=" ", actor=people["monitor"])
    assert caught.value.message_dict["text"] == ["Write the message: it cannot be empty."]
    with pytest.raises(ValidationError) as caught:
        query_raise(target=clinical.patient, text="x" * 2001, actor=people["monitor"])
    assert "2001 characters" in caught.value.message_dict["text"][0]


def test_queries_are_scoped_to_the_users_sites(clinical, people):
    query_raise(target=clinical.patient, text="Check", actor=people["monitor"])
    assert Query.objects.for_user(people["coordinator"]).count() == 1
    assert Query.objects.for_user(people["other_coordinator"]).count() == 0


def test_value_of_a_sledai_item_and_a_patient_field(clinical):
    assert value_of(clinical.visit("M1"), "low_complement") == "not ticked"
    assert value_of(clinical.patient, "sex") == "Female"


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_edit_check_runs_open_exactly_one_query():
    """Eight runs over the same finding, released together, each in its own transaction: one query."""
    with time_machine.travel(SETUP, tick=True):
        clinical = make_clinical()
        for code, day, value in (("BL", dt.date(2025, 3, 2), "80"), ("M1", dt.date(2025, 4, 2), "130")):
            visit_record(
                visit=clinical.visit(code), actual_date=day, results={"CREAT": (value, None)}, status="in_progress"
            )
    Query.objects.all().delete()
    n = 8
    outcomes = released_together(
        n, lambda _index: run_edit_checks(study_ids=[clinical.study.pk]).opened, within=transaction.atomic
    )
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    per_rule = Counter(Query.objects.values_list("rule", flat=True))
    assert per_rule == {"creatinine_rise": 1, "egfr_drop": 1}
    assert sum(outcomes) == 2  # what one run inserted, the others found there
    assert QueryMessage.objects.count() == 2  # one thread each


def test_who_may_act_reads_the_same_from_memberships_already_read(clinical, django_assert_num_queries):
    from django.test import RequestFactory

    from quality import constants as qc
    from quality.services.queries import can_act
    from registry.admin_tools import request_memberships

    other = make_site()
    users = [
        make_user("act_monitor", clinical.site, role=Role.MONITOR),
        make_user("act_coordinator", clinical.site, role=Role.COORDINATOR),
        make_user("act_elsewhere", other, role=Role.MONITOR),
        make_user("act_none"),
    ]
    inactive = make_user("act_inactive", clinical.site, role=Role.MONITOR)
    inactive.is_active = False
    inactive.save()
    for user in [*users, inactive]:
        request = RequestFactory().get("/admin/")
        request.user = user
        memberships = request_memberships(request)
        for roles in (qc.RAISE_ROLES, qc.ANSWER_ROLES):
            for site in (clinical.site, other):
                with django_assert_num_queries(0):
                    quick = can_act(user, site.pk, roles, memberships=memberships)
                assert quick == can_act(user, site.pk, roles), (user.username, roles, site.code)
    assert can_act(users[0], clinical.site.pk, qc.RAISE_ROLES, memberships=((clinical.site.pk, Role.MONITOR),))
