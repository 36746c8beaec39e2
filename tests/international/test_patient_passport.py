"""The patient's own passport number on their consulate letter (issue 12, item 5).

No form asked for the patient's passport number and the patient's attestation printed none:
the companions' letters had theirs, the patient's had nothing for the consulate to match.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from protonpath.accounts.models import ApiToken, AuditEvent
from protonpath.international import issuing, pdf
from protonpath.referrals.models import Patient
from tests.factories import make_request, patient_data, request_data
from tests.international.test_consulate_letters import DETAILS, text_of
from tests.international.test_consulate_letters import details as details  # noqa: F401  (fixture)
from tests.international.test_consulate_letters import paid as paid  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _back_to_the_default_language():
    yield
    translation.activate(settings.LANGUAGE_CODE)


def _form_post(patient: dict, request: dict) -> dict:
    data = {f"patient-{k}": (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in patient.items()}
    data.update({f"request-{k}": ("on" if v is True else v) for k, v in request.items() if v is not False})
    return data


@pytest.mark.parametrize(("language", "label"), [("en", "Passport number"), ("fr", "Numéro de passeport")])
def test_the_patient_attestation_prints_the_patients_own_passport(paid, language, label):  # noqa: F811
    patient = paid.treatment_request.patient
    patient.passport_number = "MA9876543"
    patient.save()
    text = text_of(pdf.attestation_pdf(paid.treatment_request, language=language))
    assert f"{label} MA9876543" in text
    assert DETAILS["signatory_name"] in text


def test_without_a_passport_number_the_attestation_has_no_empty_line(paid):  # noqa: F811
    assert "Passport number" not in text_of(pdf.attestation_pdf(paid.treatment_request, language="en"))


def test_a_corrected_passport_number_issues_a_new_version(paid, patient):  # noqa: F811
    r = paid.treatment_request
    first = issuing.issue_letter(actor=patient, treatment_request=r, language="en")
    r.patient.passport_number = "MA0000001"
    r.patient.save()
    second = issuing.issue_letter(actor=patient, treatment_request=r, language="en")
    assert second.version == first.version + 1
    assert "MA0000001" in text_of(bytes(second.pdf))


def test_the_patient_enters_their_passport_number_in_the_request_form(client, patient):
    client.force_login(patient)
    form = client.get(reverse("referrals:new")).content.decode()
    assert 'name="patient-passport_number"' in form
    response = client.post(reverse("referrals:new"), _form_post(patient_data(passport_number="MA1122334"), request_data()))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Patient.objects.get(user=patient).passport_number == "MA1122334"


def test_staff_correct_the_passport_number(staff, patient):
    from protonpath.referrals import services

    r = make_request(patient, complete=False, submit=False)
    services.update_request(actor=staff, treatment_request=r, patient_data={"passport_number": " MA4455667 "}, request_data={})
    r.patient.refresh_from_db()
    assert r.patient.passport_number.strip() == "MA4455667"


def test_the_api_takes_and_gives_the_passport_number(client, patient):
    _, raw = ApiToken.issue(user=patient, name="test")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    body = {
        "patient": {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in patient_data(passport_number="MA5566778").items()},
        "request": request_data(),
    }
    created = client.post("/api/requests", body, content_type="application/json", **headers)
    assert created.status_code == 201, created.content
    assert created.json()["patient"]["passport_number"] == "MA5566778"
    rid = created.json()["id"]
    patched = client.patch(
        f"/api/requests/{rid}", {"patient": {"passport_number": "MA5566779"}}, content_type="application/json", **headers
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["patient"]["passport_number"] == "MA5566779"
    schema = client.get("/api/openapi.json").json()["components"]["schemas"]
    assert "passport_number" in schema["PatientIn"]["properties"]
    assert "passport_number" not in schema["PatientIn"].get("required", [])


def test_an_api_client_that_sends_no_passport_number_still_creates_a_request(client, patient):
    _, raw = ApiToken.issue(user=patient, name="test")
    body = {
        "patient": {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in patient_data().items()},
        "request": request_data(),
    }
    created = client.post("/api/requests", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert created.status_code == 201, created.content
    assert created.json()["patient"]["passport_number"] == ""


def test_the_owner_gives_the_passport_number_late_on_the_travel_page(client, paid, patient):  # noqa: F811
    """After submission the request form is closed: the travel page takes the number."""
    r = paid.treatment_request
    url = reverse("international:travellers", args=[r.pk])
    client.force_login(patient)
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert 'name="patient-passport_number"' in page and "Numéro de passeport du patient" in page
    assert client.post(url, {"patient-passport_number": " MA7778889 "}).status_code == 302
    r.patient.refresh_from_db()
    assert r.patient.passport_number == "MA7778889"
    assert "MA7778889" in client.get(url).content.decode()
    assert "Passport number MA7778889" in text_of(pdf.attestation_pdf(r, language="en"))
    event = AuditEvent.objects.filter(actor=patient, action="update", object_type="referrals.patient").latest("pk")
    assert "MA7778889" not in event.summary
    too_long = client.post(url, {"patient-passport_number": "X" * 41})
    assert too_long.status_code == 400
    r.patient.refresh_from_db()
    assert r.patient.passport_number == "MA7778889"


def test_another_patient_may_not_set_the_passport_number(client, paid, other_patient):  # noqa: F811
    r = paid.treatment_request
    client.force_login(other_patient)
    response = client.post(reverse("international:travellers", args=[r.pk]), {"patient-passport_number": "XX0000000"})
    assert response.status_code in (403, 404)
    r.patient.refresh_from_db()
    assert r.patient.passport_number == ""
    assert AuditEvent.objects.filter(actor=other_patient, action="denied").exists()
