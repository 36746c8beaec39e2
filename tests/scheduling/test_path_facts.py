"""Each step of the path checks the facts it records, not only the request's state (issue 12, 3).

On 1 December, staff could press "First session given" for a course whose first session is on
12 January, and "Start treatment planning" was offered before the first consultation was held.
The service refuses (pages and API alike) with a translated reason and a "denied" row in the
audit trail, and the page does not offer the step until the fact is there.
"""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone, translation

from protonpath.accounts.models import ApiToken, AuditEvent
from protonpath.referrals import services as referral_services
from protonpath.referrals.models import State
from protonpath.scheduling import selectors, services
from protonpath.scheduling.facts import missing_fact
from protonpath.scheduling.models import GantrySession, SessionStatus
from tests.facts import course_with_sessions, hold_first_consultation

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english_afterwards():
    """Pages served in French leave French active in the thread: the next test starts in English."""
    with translation.override("en"):
        yield


def _booked_in_the_future(r, staff, oncologist):
    day = selectors.next_days_with_hours(timezone.localdate() + datetime.timedelta(days=2), 1)[0]
    start = timezone.make_aware(datetime.datetime.combine(day, datetime.time(8)))
    while True:
        try:
            return services.book_consultation(actor=staff, treatment_request=r, doctor=oncologist, start=start)
        except ValidationError:
            start += datetime.timedelta(hours=1)


def _denied(r, action):
    return AuditEvent.objects.filter(
        treatment_request_id=r.pk, action=AuditEvent.Action.DENIED, summary=f"action={action}: facts missing"
    ).count()


def _page(client, user, r):
    client.force_login(user)
    return client.get(f"/requests/{r.pk}/").content.decode()


def test_planning_is_not_offered_nor_allowed_before_the_first_consultation_is_held(
    client, domestic_accepted, staff, oncologist
):
    r = domestic_accepted
    _booked_in_the_future(r, staff, oncologist)
    r.refresh_from_db()
    assert r.state == State.CONSULTATION_BOOKED

    # The service refuses, with the reason and a denied row.
    with pytest.raises(ValidationError) as refused:
        referral_services.perform(actor=oncologist, treatment_request=r, action="start_planning")
    assert refused.value.code == "facts"
    assert "first consultation has been held" in refused.value.messages[0]
    assert _denied(r, "start_planning") == 1

    # The page does not offer the button; it says why.
    html = _page(client, oncologist, r)
    assert "action-start_planning" not in html
    assert 'data-action="start_planning"' in html and "first consultation has been held" in html

    # A forged POST from the page is refused the same way, and the refusal stays in the trail.
    client.post(f"/requests/{r.pk}/actions/start_planning/", follow=True)
    r.refresh_from_db()
    assert r.state == State.CONSULTATION_BOOKED
    assert _denied(r, "start_planning") == 2

    # The API too.
    _, raw = ApiToken.issue(user=oncologist, name="test")
    answer = client.post(
        f"/api/requests/{r.pk}/actions/start_planning", {"note": ""}, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert answer.status_code == 400, answer.content
    assert "first consultation" in str(answer.json()["detail"])
    assert _denied(r, "start_planning") == 3
    listed = client.get(f"/api/requests/{r.pk}", HTTP_AUTHORIZATION=f"Bearer {raw}").json()["available_actions"]
    assert "start_planning" not in listed and "cancel" in listed

    # Once the consultation has been held, the step is offered and taken.
    hold_first_consultation(r, oncologist)
    assert "action-start_planning" in _page(client, oncologist, r)
    listed = client.get(f"/api/requests/{r.pk}", HTTP_AUTHORIZATION=f"Bearer {raw}").json()["available_actions"]
    assert "start_planning" in listed
    referral_services.perform(actor=oncologist, treatment_request=r, action="start_planning")
    r.refresh_from_db()
    assert r.state == State.PLANNING


def test_first_session_given_is_refused_while_the_first_session_is_in_the_future(
    client, domestic_accepted, staff, oncologist, physicist
):
    r = domestic_accepted
    hold_first_consultation(r, oncologist)
    r.state = State.CONSULTATION_BOOKED
    r.save(update_fields=["state"])
    referral_services.perform(actor=oncologist, treatment_request=r, action="start_planning")
    # "Treatment scheduled" needs sessions on the gantry.
    with pytest.raises(ValidationError) as refused:
        referral_services.perform(actor=staff, treatment_request=r, action="schedule_treatment")
    assert refused.value.code == "facts"
    course = course_with_sessions(r, physicist, given=0, pending=3)
    first = course.sessions.order_by("start").first()
    first.start = timezone.now() + datetime.timedelta(days=40)  # "on 12 January", seen on 1 December
    first.end = first.start + datetime.timedelta(minutes=30)
    first.save(update_fields=["start", "end"])
    referral_services.perform(actor=staff, treatment_request=r, action="schedule_treatment")
    r.refresh_from_db()
    assert r.state == State.SCHEDULED

    with pytest.raises(ValidationError) as refused:
        referral_services.perform(actor=staff, treatment_request=r, action="start_treatment")
    assert refused.value.code == "facts"
    assert _denied(r, "start_treatment") == 1
    r.refresh_from_db()
    assert r.state == State.SCHEDULED
    html = _page(client, staff, r)
    assert "action-start_treatment" not in html and 'data-action="start_treatment"' in html
    # A future session cannot be recorded as given either.
    with pytest.raises(ValidationError):
        services.record_session(actor=staff, session=first, outcome=SessionStatus.DONE)

    # The session's time comes: recorded as given in the agenda, the treatment starts.
    first.start = timezone.now() - datetime.timedelta(hours=1)
    first.end = first.start + datetime.timedelta(minutes=30)
    first.save(update_fields=["start", "end"])
    services.record_session(actor=staff, session=GantrySession.objects.get(pk=first.pk), outcome=SessionStatus.DONE)
    r.refresh_from_db()
    assert r.state == State.IN_TREATMENT

    # "Treatment completed" waits for the sessions still to be given.
    with pytest.raises(ValidationError) as refused:
        referral_services.perform(actor=oncologist, treatment_request=r, action="complete_treatment")
    assert refused.value.code == "facts"


def test_the_reasons_read_in_french(domestic_accepted):
    for action in ("start_planning", "schedule_treatment", "start_treatment", "complete_treatment"):
        with translation.override("en"):
            english = missing_fact(action, domestic_accepted)
        with translation.override("fr"):
            french = missing_fact(action, domestic_accepted)
        assert english and french and french != english, action
    with translation.override("fr"):
        assert "consultation" in missing_fact("start_planning", domestic_accepted)


def test_the_page_says_why_in_french(client, domestic_accepted, staff, oncologist):
    r = domestic_accepted
    _booked_in_the_future(r, staff, oncologist)
    client.force_login(oncologist)
    client.cookies["django_language"] = "fr"
    html = client.get(f"/requests/{r.pk}/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert 'data-action="start_planning"' in html
    with translation.override("fr"):
        assert missing_fact("start_planning", r) in html


