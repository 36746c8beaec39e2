"""A child's request, filled in by a parent or legal guardian (issue 12, 8).

Sign-up and the request form had no place for the parent who fills them in, and the patient's
name was pre-filled with the account holder's; a patient's second request overwrote the name of
their existing record.
"""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone, translation

from protonpath.accounts.models import ApiToken, AuditEvent, Role, User
from protonpath.referrals import services
from protonpath.referrals.models import Patient, TreatmentRequest
from tests.factories import PASSWORD, patient_data, request_data

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english_afterwards():
    with translation.override("en"):
        yield


def _nine_years_old() -> datetime.date:
    today = timezone.localdate()
    return today.replace(year=today.year - 9) - datetime.timedelta(days=30)


CHILD = {"first_name": "Yasmine", "last_name": "Haddad", "sex": "F", "birth_place": "Oran", "nationality": "DZ", "country_of_residence": "DZ"}
GUARDIAN = {
    "filled_by_guardian": True,
    "guardian_name": "Samia Haddad",
    "guardian_relationship": "mother",
    "guardian_phone": "+213 555 00 00 00",
    "guardian_email": "samia@example.org",
}


def _sign_up_as_guardian(client) -> User:
    answer = client.post(
        reverse("accounts:signup"),
        {
            "username": "samia",
            "first_name": "Samia",
            "last_name": "Haddad",
            "email": "samia@example.org",
            "phone": "+213 555 00 00 00",
            "preferred_language": "en",
            "role": "guardian",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    return User.objects.get(username="samia")


def _form_post(patient: dict, request: dict) -> dict:
    data = {f"patient-{k}": (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in patient.items()}
    for key, value in request.items():
        if isinstance(value, bool):
            if value:
                data[f"request-{key}"] = "on"
        else:
            data[f"request-{key}"] = value
    return data


def test_a_parent_signs_up_and_the_form_asks_for_the_childs_name(client):
    signup = client.get(reverse("accounts:signup")).content.decode()
    assert 'value="guardian"' in signup and "parent or legal guardian" in signup
    user = _sign_up_as_guardian(client)
    assert user.role == Role.PATIENT and user.fills_in_for_patient

    form = client.get(reverse("referrals:new")).content.decode()
    assert 'id="guardian"' in form
    assert 'name="patient-first_name"' in form and 'name="patient-first_name" value="Samia"' not in form
    assert 'name="patient-last_name" value="Haddad"' not in form
    assert 'name="request-guardian_name" value="Samia Haddad"' in form
    assert 'name="request-filled_by_guardian"' in form and "checked" in form.split('name="request-filled_by_guardian"')[1][:80]

    answer = client.post(
        reverse("referrals:new"), _form_post({**patient_data(**CHILD), "birth_date": _nine_years_old()}, {**request_data(), **GUARDIAN})
    )
    assert answer.status_code == 302, answer.content.decode()[:3000]
    r = TreatmentRequest.objects.get()
    assert (r.patient.first_name, r.patient.last_name) == ("Yasmine", "Haddad") and r.patient.is_child
    assert r.filled_by_guardian and r.guardian_name == "Samia Haddad" and r.guardian_relationship == "mother"
    page = client.get(reverse("referrals:detail", args=[r.pk])).content.decode()
    assert "Samia Haddad (Mother)" in page
    client.cookies["django_language"] = "fr"
    assert "Samia Haddad (Mère)" in client.get(reverse("referrals:detail", args=[r.pk]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()


def test_a_childs_request_needs_the_guardian_and_their_contact(client, patient):
    client.force_login(patient)
    child = {**patient_data(**CHILD), "birth_date": _nine_years_old()}
    alone = client.post(reverse("referrals:new"), _form_post(child, request_data()))
    assert alone.status_code == 200 and "The patient is a minor" in alone.content.decode()
    half = client.post(
        reverse("referrals:new"),
        _form_post(child, {**request_data(), "filled_by_guardian": True, "guardian_relationship": "father"}),
    )
    html = half.content.decode()
    assert "Give the name of the parent or legal guardian." in html and "Give a telephone number or an e-mail address" in html
    assert not TreatmentRequest.objects.exists() and not Patient.objects.exists()
    with pytest.raises(ValidationError):
        services.create_request(actor=patient, patient_data=child, request_data=request_data())


def test_a_second_request_keeps_the_patients_record_as_it_is(patient):
    first = services.create_request(actor=patient, patient_data=patient_data(), request_data=request_data())
    record = first.patient
    # Same person, written differently, with a new telephone: the record is reused, its name kept.
    second = services.create_request(
        actor=patient,
        patient_data=patient_data(first_name="AMINA", last_name="el idrissi", phone="+212 611 111 111"),
        request_data=request_data(),
    )
    record.refresh_from_db()
    assert second.patient_id == record.pk and Patient.objects.count() == 1
    assert (record.first_name, record.last_name, record.phone) == ("Amina", "El Idrissi", "+212 611 111 111")
    # Another person's name on a patient's own account: refused, the record untouched.
    with pytest.raises(ValidationError) as refused:
        services.create_request(actor=patient, patient_data=patient_data(first_name="Karim"), request_data=request_data())
    assert refused.value.code == "identity"
    record.refresh_from_db()
    assert record.first_name == "Amina" and TreatmentRequest.objects.count() == 2
    assert AuditEvent.objects.filter(actor=patient, action=AuditEvent.Action.DENIED, object_id=str(record.pk)).exists()


def test_a_parent_with_two_children_gets_two_records(client):
    user = _sign_up_as_guardian(client)
    child = {**patient_data(**CHILD), "birth_date": _nine_years_old()}
    brother = {**child, "first_name": "Adam", "sex": "M", "birth_date": _nine_years_old() - datetime.timedelta(days=800)}
    first = services.create_request(actor=user, patient_data=child, request_data={**request_data(), **GUARDIAN})
    second = services.create_request(actor=user, patient_data=brother, request_data={**request_data(), **GUARDIAN})
    again = services.create_request(actor=user, patient_data=child, request_data={**request_data(), **GUARDIAN})
    assert first.patient_id != second.patient_id and again.patient_id == first.patient_id
    assert sorted(Patient.objects.values_list("first_name", flat=True)) == ["Adam", "Yasmine"]
    listing = client.get(reverse("referrals:list")).content.decode()
    assert first.reference in listing and second.reference in listing
    form = client.get(reverse("referrals:new") + "?another=1").content.decode()
    assert 'name="patient-first_name" value="Yasmine"' not in form


def test_the_api_takes_the_guardian(client):
    user = User.objects.create_user("parent", password=PASSWORD, role=Role.PATIENT, fills_in_for_patient=True)
    _, raw = ApiToken.issue(user=user, name="test")
    child = {**patient_data(**CHILD), "birth_date": _nine_years_old().isoformat()}
    answer = client.post(
        "/api/requests",
        {"patient": child, "request": {**request_data(), **GUARDIAN}},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["filled_by_guardian"] and body["guardian_relationship"] == "mother" and body["guardian_name"] == "Samia Haddad"
    refused = client.post(
        "/api/requests",
        {"patient": {**child, "first_name": "Nour"}, "request": request_data()},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert refused.status_code == 400 and "minor" in refused.content.decode()


def test_the_signup_and_the_form_read_in_french(client):
    client.cookies["django_language"] = "fr"
    signup = client.get(reverse("accounts:signup"), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "parent ou le représentant légal" in signup
    _sign_up_as_guardian(client)
    client.cookies["django_language"] = "fr"
    form = client.get(reverse("referrals:new"), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Rempli par un parent ou le représentant légal" in form


def test_a_doctors_form_does_not_ask_whether_they_are_the_parent(client, doctor, staff):
    for user in (doctor, staff):
        client.force_login(user)
        form = client.get(reverse("referrals:new")).content.decode()
        assert 'name="request-filled_by_guardian"' not in form and 'id="guardian"' not in form
