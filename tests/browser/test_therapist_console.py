"""The radiation therapist at the console, in a real browser: signing in opens the gantry's day,
today's session is recorded as given, and the page reads in French too. Screenshots go to
test-artifacts/screenshots/."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from protonpath.scheduling.models import GantrySession, SessionStatus
from tests.browser.conftest import login
from tests.factories import PASSWORD
from tests.scheduling.conftest import (  # noqa: F401
    domestic_accepted,
    international_accepted,
    international_paid,
    patient_request,  # noqa: F401
)
from tests.scheduling.test_django_views import scheduled_course


@pytest.mark.django_db(transaction=True)
def test_the_therapist_opens_on_the_gantrys_day_and_records_a_session(page, screenshot, users, patient_request):  # noqa: F811
    course = scheduled_course(users, patient_request, "adult_standard")
    session = course.sessions.order_by("start").first()
    start = timezone.now() - datetime.timedelta(minutes=30)
    GantrySession.objects.filter(pk=session.pk).update(start=start, end=start + datetime.timedelta(minutes=25))

    login(page, users["therapist"].username, PASSWORD)
    assert "/scheduling/agenda/" in page.url
    row = page.locator("tr.status-planned, tr.status-announced").first
    row.wait_for()
    screenshot("gantry-day-on-sign-in")
    row.locator("button[value=done]").click()
    page.wait_for_load_state("networkidle")
    session.refresh_from_db()
    assert session.status == SessionStatus.DONE
    assert page.locator("tr.status-done").count() == 1
    screenshot("session-recorded")

    with page.expect_navigation():
        page.select_option("form.lang select[name=language]", "fr")
    page.wait_for_selector("tr.status-done")
    text = page.inner_text("main")
    assert "Planning de la salle de traitement" in text
    assert "Réalisée" in page.inner_text("tr.status-done")
    screenshot("gantry-day-in-french")
