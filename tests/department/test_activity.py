"""The head of department's activity figures, computed from known histories."""

from __future__ import annotations

import base64
import datetime
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from protonpath.accounts.models import AuditEvent
from protonpath.department import charts, selectors
from protonpath.referrals.models import State, StateChange, TreatmentRequest
from tests.factories import make_request

pytestmark = pytest.mark.django_db

T0 = timezone.make_aware(datetime.datetime(2025, 3, 3, 9, 0))


def _history(owner, *, state: str, fractions: int | None, steps: list[tuple[str, float]]):
    """A submitted request whose path is rewritten to ``steps`` = [(state, days after T0)]."""
    r = make_request(owner)
    r.history.all().delete()
    previous = State.DRAFT
    StateChange.objects.create(treatment_request=r, from_state=previous, to_state=State.SUBMITTED, at=T0)
    previous = State.SUBMITTED
    for to_state, days in steps:
        StateChange.objects.create(treatment_request=r, from_state=previous, to_state=to_state, at=T0 + datetime.timedelta(days=days))
        previous = to_state
    TreatmentRequest.objects.filter(pk=r.pk).update(state=state, submitted_at=T0, proposed_fractions=fractions)
    return r


@pytest.fixture
def known_activity(patient):
    # Accepted after 10 days, first session 40 days after the request (April 2025), 30 fractions.
    _history(
        patient,
        state=State.COMPLETED,
        fractions=30,
        steps=[(State.COMPLETE, 2), (State.IN_REVIEW, 3), (State.ACCEPTED, 10), (State.IN_TREATMENT, 40), (State.COMPLETED, 80)],
    )
    # Declined after 20 days.
    _history(patient, state=State.DECLINED, fractions=None, steps=[(State.IN_REVIEW, 5), (State.DECLINED, 20)])
    # More information asked after 4 days, then accepted; first session after 400 days (2026), 39 fractions.
    _history(
        patient,
        state=State.IN_TREATMENT,
        fractions=39,
        steps=[(State.IN_REVIEW, 1), (State.INFO_REQUESTED, 4), (State.IN_REVIEW, 30), (State.ACCEPTED, 35), (State.IN_TREATMENT, 400)],
    )
    # Not reviewed yet.
    _history(patient, state=State.SUBMITTED, fractions=None, steps=[])
    # A draft: never submitted.
    make_request(patient, complete=False, submit=False)


def test_requests_are_counted_by_state(known_activity):
    summary = selectors.activity_summary()
    counts = {state: n for state, _label, n in summary["by_state"]}
    assert counts[State.COMPLETED] == 1 and counts[State.DECLINED] == 1 and counts[State.IN_TREATMENT] == 1
    assert counts[State.SUBMITTED] == 1 and counts[State.DRAFT] == 1 and counts[State.ACCEPTED] == 0
    assert summary["total"] == 5


def test_waiting_time_to_the_first_review_outcome(known_activity):
    waiting = selectors.activity_summary()["to_decision"]
    # 10, 20 and 4 days: the first outcome counts (more information asked is one).
    assert (waiting.count, waiting.median_days, waiting.mean_days) == (3, 10.0, 11.3)


def test_waiting_time_to_the_first_session(known_activity):
    waiting = selectors.activity_summary()["to_first_session"]
    assert (waiting.count, waiting.median_days, waiting.mean_days) == (2, 220.0, 220.0)


def test_sessions_per_year_are_the_fractions_of_courses_started_that_year(known_activity):
    summary = selectors.activity_summary()
    assert summary["sessions_per_year"] == [(2025, 30, 1), (2026, 39, 1)]
    assert (summary["reference_year"], summary["reference_sessions"]) == (2019, 2373)
    assert summary["sessions_are_estimates"] is True


def test_no_data_gives_empty_figures_not_errors():
    summary = selectors.activity_summary()
    assert summary["total"] == 0 and summary["sessions_per_year"] == []
    assert summary["to_decision"] == selectors.Waiting(0, None, None)


def test_the_activity_page_shows_the_figures_and_the_charts_as_images(client, head, known_activity):
    client.force_login(head)
    response = client.get(reverse("department:activity"))
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r'id="total">5<', html)
    assert re.search(r'<tr id="wait-decision">.*?<td class="num">3</td><td class="num">10.0</td><td class="num">11.3</td>', html, re.S)
    assert re.search(r'data-year="2025"><th scope="row">2025</th><td class="num">1</td><td class="num">30</td>.*?<td class="num">1.3 %</td>', html, re.S)
    assert "2,373" in html and "Estimate" in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 2
    assert all(base64.b64decode(data).startswith(charts.PNG_SIGNATURE) for data in images)
    assert AuditEvent.objects.filter(actor=head, object_type="department.activity", action="view").exists()


def test_administrative_staff_see_the_activity_page_too(client, staff):
    client.force_login(staff)
    assert client.get(reverse("department:activity")).status_code == 200


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get(reverse("department:activity"))
    assert response.status_code == 302 and "/accounts/login" in response["Location"]


def test_a_chart_is_a_png_image():
    png = charts.bar_chart(["2019", "2025"], [2373, 30], title="Sessions", reference=2373, reference_label="2019")
    assert png.startswith(charts.PNG_SIGNATURE) and len(png) > 1000


def test_sessions_given_are_counted_from_the_gantry_records_when_kept(client, head, staff, known_activity):
    from django.apps import apps

    assert apps.is_installed("protonpath.scheduling"), "this installation keeps session records"
    course_model = apps.get_model("scheduling", "TreatmentCourse")
    session_model = apps.get_model("scheduling", "GantrySession")
    r = TreatmentRequest.objects.get(state=State.IN_TREATMENT)
    course = course_model.objects.create(
        treatment_request=r,
        fractions=39,
        category="adult_standard",
        session_minutes=30,
        first_session_extra_minutes=15,
        ready_date=datetime.date(2026, 3, 30),
        due_date=datetime.date(2026, 4, 30),
        created_by=staff,
    )
    first = timezone.make_aware(datetime.datetime(2026, 4, 7, 9, 0))
    for number, status in enumerate(["done", "done", "done", "missed", "planned"], start=1):
        start = first + datetime.timedelta(days=number)
        session_model.objects.create(
            course=course, fraction_number=number, start=start, end=start + datetime.timedelta(minutes=30), status=status
        )
    summary = selectors.activity_summary()
    assert summary["recorded_sessions"] == [(2025, 0), (2026, 3)]
    assert summary["sessions_per_year"] == [(2025, 30, 1), (2026, 39, 1)]
    client.force_login(head)
    html = client.get(reverse("department:activity")).content.decode()
    # 2026: 3 sessions given, compared with 2,373: 0.1 %; 2025 has no records: the estimate (30) counts.
    assert re.search(r'data-year="2026">.*?<td class="num given">3</td><td class="num">0.1 %</td>', html, re.S)
    assert re.search(r'data-year="2025">.*?<td class="num given">0</td><td class="num">1.3 %</td>', html, re.S)


def test_the_reference_line_label_has_its_plural_and_grouped_digits_in_both_languages():
    from django.utils import translation

    from protonpath.department.views import reference_sessions_label

    with translation.override("en"):
        assert reference_sessions_label(2019, 2373) == "2019: 2,373 sessions"
        assert reference_sessions_label(2019, 1) == "2019: 1 session"
    with translation.override("fr"):
        assert reference_sessions_label(2019, 2373) == "2019\u00a0: 2\u00a0373 séances"
        assert reference_sessions_label(2019, 1) == "2019\u00a0: 1 séance"
