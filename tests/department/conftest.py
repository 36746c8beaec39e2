"""Fixtures of the department's tests: meetings and requests ready for review."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from protonpath.department import services
from tests.factories import advance_to, make_request, meeting_day


@pytest.fixture
def meeting(staff, oncologist, head):
    starts_at = timezone.make_aware(datetime.datetime.combine(meeting_day(), datetime.time(14, 0)))
    return services.create_meeting(actor=staff, starts_at=starts_at, chair=oncologist, location="Staff room", attendees=[head])


@pytest.fixture
def complete_request(patient, staff, oncologist):
    return advance_to(make_request(patient), "complete", staff=staff, oncologist=oncologist)


@pytest.fixture(autouse=True)
def _english_by_default():
    """Pages served in French leave French active in the thread: each test starts in English."""
    from django.utils import translation

    with translation.override("en"):
        yield
