"""The course form offers the category the file already says: a child quoted with general
anaesthesia is treated under anaesthesia (it was offered "child, awake")."""

from __future__ import annotations

import datetime

import pytest
from django.test import RequestFactory

from protonpath.international import services as intl
from protonpath.scheduling import panels
from protonpath.scheduling.categories import default_category
from tests.factories import advance_to, make_request

pytestmark = pytest.mark.django_db


def _child_request(owner, staff, oncologist):
    r = advance_to(make_request(owner), "accepted", staff=staff, oncologist=oncologist)
    r.patient.birth_date = datetime.date.today().replace(year=datetime.date.today().year - 6)
    r.patient.save()
    return r


@pytest.mark.parametrize("anaesthesia, expected", [(True, "paediatric_anaesthesia"), (False, "paediatric_awake")])
def test_a_childs_course_category_follows_the_quote(patient, staff, oncologist, anaesthesia, expected):
    intl.load_illustrative_tariff(valid_from=datetime.date(2026, 1, 1))
    r = _child_request(patient, staff, oncologist)
    quote = intl.send_quote(actor=staff, quote=intl.build_quote(actor=staff, treatment_request=r, anaesthesia=anaesthesia))
    intl.accept_quote(actor=patient, quote=quote)
    assert default_category(r) == expected


def test_an_adult_is_standard_and_a_child_without_quote_awake(patient, doctor, staff, oncologist):
    assert default_category(make_request(doctor)) == "adult_standard"
    assert default_category(_child_request(patient, staff, oncologist)) == "paediatric_awake"


def test_the_course_form_is_offered_with_anaesthesia_for_a_child_quoted_with_it(patient_request, staff):
    patient_request.patient.birth_date = datetime.date.today().replace(year=datetime.date.today().year - 6)
    patient_request.patient.save()
    patient_request.quotes.filter(status="accepted").update(anaesthesia=True)
    request = RequestFactory().get("/")
    request.user = staff
    context = panels.request_panels(request, patient_request)[0]["context"]
    assert context["course_form"].initial["category"] == "paediatric_anaesthesia"
