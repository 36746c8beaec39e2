"""The demo seed books the first consultation and places the course of the demo's accepted request, once."""

from __future__ import annotations

import io

import pytest

from protonpath.referrals import services as referral_services
from protonpath.scheduling import demo
from protonpath.scheduling.models import Consultation, GantrySession, TreatmentCourse
from tests.factories import advance_to, make_request

pytestmark = pytest.mark.django_db


def test_the_demo_seed_is_idempotent(doctor, staff, oncologist):
    r = advance_to(
        make_request(doctor, covered_by_french_insurance=True),
        "accepted",
        staff=staff,
        oncologist=oncologist,
    )
    referral_services.send_decision(actor=staff, treatment_request=r)
    referral_services.perform(
        actor=staff, treatment_request=r, action="book_consultation"
    )  # as the demo does
    out = io.StringIO()
    demo.seed(out)
    demo.seed(out)
    assert Consultation.objects.filter(treatment_request=r, status="booked").count() == 1
    course = TreatmentCourse.objects.get(treatment_request=r)
    assert GantrySession.objects.filter(course=course).count() == course.fractions == 30
    assert out.getvalue().count("first consultation booked") == 1
