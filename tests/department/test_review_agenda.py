""""Send to the review meeting" puts the file on a meeting's agenda (issue 12, 7).

The bare button changed the state and put the file on no agenda. On the request page, the step
now asks which of the upcoming meetings; a file sent to review some other way (the API, or taken
off an agenda) shows in the staff's queue as waiting for a meeting until it is on one.
"""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone, translation

from protonpath.accounts.models import ApiToken
from protonpath.department import services
from protonpath.department.models import AgendaItem, ReviewMeeting
from protonpath.referrals import selectors as referral_selectors
from protonpath.referrals.models import State

pytestmark = pytest.mark.django_db


def _page(client, user, r) -> str:
    client.force_login(user)
    return client.get(f"/requests/{r.pk}/").content.decode()


def test_sending_to_review_asks_which_upcoming_meeting(client, staff, oncologist, meeting, complete_request):
    r = complete_request
    later = services.create_meeting(
        actor=staff, starts_at=meeting.starts_at + datetime.timedelta(days=7), chair=oncologist, location="Room 2"
    )
    held = services.create_meeting(actor=staff, starts_at=meeting.starts_at - datetime.timedelta(days=7), chair=oncologist)
    ReviewMeeting.objects.filter(pk=held.pk).update(status=ReviewMeeting.Status.HELD)
    forgotten = services.create_meeting(actor=staff, starts_at=timezone.now() - datetime.timedelta(days=3), chair=oncologist)

    html = _page(client, staff, r)
    assert "action-send_to_review" not in html  # no bare button that puts the file on no agenda
    assert 'class="agenda-add"' in html and "Send to the review meeting" in html
    assert f'<option value="{meeting.pk}">' in html and f'<option value="{later.pk}">' in html
    assert f'<option value="{held.pk}">' not in html and f'<option value="{forgotten.pk}">' not in html
    assert 'href="#step-send_to_review"' in html  # the actions column leads to the meeting choice

    client.post(
        "/department/agenda/add/",
        {"meeting": later.pk, "treatment_request": r.pk, "next": f"/requests/{r.pk}/"},
    )
    r.refresh_from_db()
    assert r.state == State.IN_REVIEW
    assert AgendaItem.objects.get(treatment_request=r, decision="").meeting_id == later.pk
    assert r.reference not in client.get("/requests/queues/").content.decode().split('id="queue-waiting_for_meeting"')[1].split("</section>")[0]


def test_a_file_in_review_on_no_agenda_waits_in_the_queue(client, staff, oncologist, meeting, complete_request):
    r = complete_request
    _, raw = ApiToken.issue(user=staff, name="test")
    answer = client.post(
        f"/api/requests/{r.pk}/actions/send_to_review", {}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert answer.json()["state"] == "in_review"

    assert list(referral_selectors.work_queues(staff)["waiting_for_meeting"]) == [r]
    client.force_login(staff)
    queues = client.get("/requests/queues/").content.decode()
    section = queues.split('id="queue-waiting_for_meeting"')[1].split("</section>")[0]
    assert "waiting for a meeting" in section and r.reference in section
    page = _page(client, staff, r)
    assert 'id="waiting-for-meeting"' in page and f'<option value="{meeting.pk}">' in page

    # On an agenda, it leaves that queue; taken off again, it comes back.
    item = services.add_to_agenda(actor=staff, meeting=meeting, treatment_request=r)
    assert r not in referral_selectors.work_queues(staff)["waiting_for_meeting"]
    services.remove_from_agenda(actor=staff, item=item)
    assert r in referral_selectors.work_queues(staff)["waiting_for_meeting"]


def test_the_waiting_queue_reads_in_french(client, staff, complete_request):
    client.force_login(staff)
    client.cookies["django_language"] = "fr"
    html = client.get("/requests/queues/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "En revue, en attente d’inscription à une réunion" in html
    with translation.override("fr"):
        assert str(referral_selectors.QUEUE_LABELS["waiting_for_meeting"]) != "In review, waiting for a meeting's agenda"


def test_no_meeting_planned_says_so(client, staff, complete_request):
    html = _page(client, staff, complete_request)
    assert "No review meeting is planned." in html and "action-send_to_review" not in html
