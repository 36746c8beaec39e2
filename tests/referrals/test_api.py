"""The JSON API walks the same path as the pages, with the same rules."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from protonpath.accounts.models import ApiToken
from protonpath.referrals.models import TreatmentRequest
from tests.factories import PDF_BYTES, dicom_upload, patient_data, request_ct, request_data

pytestmark = pytest.mark.django_db


class Api:
    def __init__(self, client, user):
        _, raw = ApiToken.issue(user=user, name="test")
        self.client = client
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}

    def get(self, url):
        return self.client.get(url, **self.headers)

    def post(self, url, json=None, **kwargs):
        if json is not None:
            return self.client.post(url, json, content_type="application/json", **self.headers)
        return self.client.post(url, **kwargs, **self.headers)


def jsonable(data):
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in data.items()}


def test_a_request_walks_from_submission_to_acceptance(client, patient, staff, oncologist):
    api = Api(client, patient)
    created = api.post("/api/requests", {"patient": jsonable(patient_data()), "request": request_data()})
    assert created.status_code == 201, created.content
    body = created.json()
    rid = body["id"]
    assert body["state"] == "draft" and body["is_international"] is True and "submit" in body["available_actions"]

    for kind, content, name in [
        ("doctor_letter", PDF_BYTES + b"1", "letter.pdf"),
        ("imaging_report", PDF_BYTES + b"2", "report.pdf"),
    ]:
        response = api.post(f"/api/requests/{rid}/documents", data={"kind": kind, "file": SimpleUploadedFile(name, content)})
        assert response.status_code == 201, response.content
    response = api.post(f"/api/requests/{rid}/documents", data={"kind": "dicom_images", "file": dicom_upload()})
    assert response.status_code == 400 and "Images (DICOM) section" in response.json()["detail"][0]
    response = api.post(f"/api/imaging/requests/{rid}/images", data={"files": [request_ct(TreatmentRequest.objects.get(pk=rid))]})
    assert response.status_code == 201 and response.json()["stored"] == 1, response.content
    checklist = api.get(f"/api/requests/{rid}/checklist").json()
    assert all(item["done"] for item in checklist if item["required"])

    assert api.post(f"/api/requests/{rid}/actions/submit", {}).json()["state"] == "submitted"

    staff_api = Api(client, staff)
    assert staff_api.post(f"/api/requests/{rid}/actions/mark_complete", {}).json()["state"] == "complete"
    assert staff_api.post(f"/api/requests/{rid}/actions/send_to_review", {}).json()["state"] == "in_review"
    onco_api = Api(client, oncologist)
    decided = onco_api.post(
        f"/api/requests/{rid}/decision", {"decision": "accept", "note": "Chordoma: validated.", "dose_gy": "74", "fractions": 37}
    )
    assert decided.status_code == 200 and decided.json()["state"] == "accepted"
    assert decided.json()["proposed_fractions"] == 37
    history = api.get(f"/api/requests/{rid}/history").json()
    assert [h["to_state"] for h in history] == ["submitted", "complete", "in_review", "accepted"]
    assert history[-1]["actor_role"] == "oncologist"


def test_api_errors_are_clear(client, patient, staff):
    api = Api(client, patient)
    bad = api.post("/api/requests", {"patient": {"first_name": "A"}, "request": {}})
    assert bad.status_code == 422
    created = api.post("/api/requests", {"patient": jsonable(patient_data(nationality="ZZZ")), "request": request_data()})
    assert created.status_code == 400
    ok = api.post("/api/requests", {"patient": jsonable(patient_data()), "request": request_data()}).json()
    wrong_state = Api(client, staff).post(f"/api/requests/{ok['id']}/actions/send_to_review", {})
    assert wrong_state.status_code == 400 and "cannot be done" in str(wrong_state.json()["detail"])
    forbidden = api.post(f"/api/requests/{ok['id']}/actions/mark_complete", {})
    assert forbidden.status_code == 403
    bad_file = api.post(f"/api/requests/{ok['id']}/documents", data={"kind": "doctor_letter", "file": SimpleUploadedFile("x.pdf", b"\x00bad")})
    assert bad_file.status_code == 400


def test_openapi_schema_lists_the_operations(client):
    schema = client.get("/api/openapi.json").json()
    paths = schema["paths"]
    for path in ("/api/requests", "/api/requests/{request_id}", "/api/requests/{request_id}/documents", "/api/requests/{request_id}/decision"):
        assert path in paths


def test_list_paging_is_validated(client, patient):
    api = Api(client, patient)
    assert api.get("/api/requests?offset=-1").status_code == 400
    assert api.get("/api/requests?limit=-5").status_code == 200
    assert api.get("/api/requests?state=nonsense").status_code == 400
