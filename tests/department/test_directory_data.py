"""The initial directory (data file) and the demo data: loaded once, never over staff's edits."""

from __future__ import annotations

import io

import pytest

from protonpath.department import demo
from protonpath.department.directory import directory_data, install_directory
from protonpath.department.models import OpeningHours, ReviewMeeting, Service, TeamMember
from protonpath.referrals.models import State
from tests.factories import advance_to, make_request

pytestmark = pytest.mark.django_db


def _install():
    return install_directory(service_model=Service, hours_model=OpeningHours, member_model=TeamMember)


def test_the_data_file_cites_its_source_and_the_2019_activity():
    data = directory_data()
    assert "Seed 000" in data["source"]
    assert data["activity_reference"] == {"year": 2019, "sessions": 2373, "source": data["activity_reference"]["source"]}
    assert len(data["team"]) == 11


def test_installing_again_changes_nothing_and_keeps_edits():
    Service.objects.filter(code="consultations").update(phone="+33 1 00 00 00 00")
    TeamMember.objects.filter(name="Magali Micaud").delete()
    assert _install() == {"services": 0, "hours": 0, "team": 0}
    assert Service.objects.get(code="consultations").phone == "+33 1 00 00 00 00"
    assert not TeamMember.objects.filter(name="Magali Micaud").exists()


def test_an_empty_directory_is_filled_from_the_file():
    TeamMember.objects.all().delete()
    Service.objects.all().delete()
    assert _install() == {"services": 2, "hours": 10, "team": 11}


def test_the_demo_plans_one_meeting_with_the_files_waiting_and_is_idempotent(users, patient, staff, oncologist):
    waiting = advance_to(make_request(patient), "in_review", staff=staff, oncologist=oncologist)
    demo.seed(io.StringIO())
    demo.seed(io.StringIO())
    meeting = ReviewMeeting.objects.get()
    assert [item.treatment_request_id for item in meeting.items.all()] == [waiting.pk]
    waiting.refresh_from_db()
    assert waiting.state == State.IN_REVIEW
    assert TeamMember.objects.get(role="head").user == users["head"]
