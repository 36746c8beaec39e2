"""The department's JSON API: public directory, triage, meetings and activity, role by role."""

from __future__ import annotations

import pytest

from protonpath.accounts.models import ApiToken
from protonpath.referrals.models import State
from tests.factories import make_request, meeting_day

pytestmark = pytest.mark.django_db


def bearer(user) -> dict:
    _token, raw = ApiToken.issue(user=user, name="test")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_the_team_and_services_are_public(client):
    team = client.get("/api/department/team").json()
    assert team[0] == {
        "title": "Pr",
        "name": "Jacques Balosso",
        "role": "head",
        "role_label": "Head of department",
        "specialties": ["Radiotherapy", "Proton therapy", "Hadron therapy", "Digestive oncology", "Clinical radiobiology"],
    }
    services = {s["code"]: s for s in client.get("/api/department/services").json()}
    assert services["consultations"]["hours"][0] == {"weekday": 0, "opens": "08:00:00", "closes": "18:30:00"}
    assert services["administrative_office"]["hours"][4]["closes"] == "17:00:00"
    assert services["consultations"]["location"] == "Proton therapy centre, CYCLHAD site, Caen"


@pytest.mark.parametrize("role", ["oncologist", "staff", "head"])
def test_staff_get_the_triage_of_a_request(client, users, role):
    r = make_request(users["patient"], pathology_name="Méningiome", pathology_location="sinus caverneux", had_radiotherapy=True)
    response = client.get(f"/api/department/triage/requests/{r.pk}", **bearer(users[role]))
    assert response.status_code == 200
    body = response.json()
    assert body["population"] == "adult" and body["reirradiation"] is True and body["validated"] is True
    assert [c["code"] for c in body["candidates"]] == ["adult-benign-brain", "adult-reirradiation"]
    assert body["candidates"][0]["reasons"] == ["The pathology “Méningiome” matches “meningiome”."]
    assert "Seed 000" in body["catalogue_source"]


@pytest.mark.parametrize("role", ["patient", "doctor", "physicist"])
def test_others_get_no_triage_even_of_their_own_request(client, users, role):
    r = make_request(users["patient"])
    assert client.get(f"/api/department/triage/requests/{r.pk}", **bearer(users[role])).status_code == 403
    payload = {"pathology_name": "chordoma", "age_years": 40}
    assert client.post("/api/department/triage", payload, content_type="application/json", **bearer(users[role])).status_code == 403


def test_triage_needs_authentication(client, users):
    r = make_request(users["patient"])
    assert client.get(f"/api/department/triage/requests/{r.pk}").status_code == 401


def test_unknown_requests_are_404(client, users):
    assert client.get("/api/department/triage/requests/999999", **bearer(users["oncologist"])).status_code == 404


def test_triage_of_free_text(client, users):
    payload = {"pathology_name": "Médulloblastome", "pathology_location": "fosse postérieure", "age_years": 35}
    body = client.post("/api/department/triage", payload, content_type="application/json", **bearer(users["oncologist"])).json()
    assert body["needs_discussion"] is True and body["verdict"] == "Not a validated indication: needs discussion"
    assert any("paediatric indication" in note for note in body["notes"])
    bad = client.post(
        "/api/department/triage", {"pathology_name": "x", "age_years": -3}, content_type="application/json", **bearer(users["oncologist"])
    )
    assert bad.status_code == 400


def test_a_meeting_through_the_api(client, users, complete_request):
    staff, oncologist = bearer(users["staff"]), bearer(users["oncologist"])
    created = client.post(
        "/api/department/meetings",
        {"starts_at": f"{meeting_day(2)}T14:00:00+01:00", "chair_id": users["oncologist"].pk},
        content_type="application/json",
        **staff,
    )
    assert created.status_code == 201
    meeting_id = created.json()["id"]
    added = client.post(
        f"/api/department/meetings/{meeting_id}/agenda", {"request_id": complete_request.pk}, content_type="application/json", **staff
    )
    assert added.status_code == 201 and added.json()["request_state"] == State.IN_REVIEW
    item_id = added.json()["id"]
    refused = client.post(
        f"/api/department/agenda/{item_id}/decision",
        {"decision": "accepted", "dose_gy": "54", "fractions": 30},
        content_type="application/json",
        **staff,
    )
    assert refused.status_code == 403
    missing = client.post(
        f"/api/department/agenda/{item_id}/decision", {"decision": "accepted"}, content_type="application/json", **oncologist
    )
    assert missing.status_code == 400 and "dose" in str(missing.json()["detail"])
    decided = client.post(
        f"/api/department/agenda/{item_id}/decision",
        {"decision": "accepted", "dose_gy": "54", "fractions": 30, "note": "ok"},
        content_type="application/json",
        **oncologist,
    )
    assert decided.status_code == 200
    assert (decided.json()["decision"], decided.json()["request_state"], decided.json()["proposed_fractions"]) == (
        "accepted",
        State.ACCEPTED,
        30,
    )
    meeting = client.get(f"/api/department/meetings/{meeting_id}", **oncologist).json()
    assert meeting["items"][0]["decision"] == "accepted"


@pytest.mark.parametrize("role", ["patient", "doctor", "physicist"])
def test_meetings_api_is_closed_to_others(client, users, meeting, complete_request, role):
    headers = bearer(users[role])
    assert client.get("/api/department/meetings", **headers).status_code == 403
    assert client.get(f"/api/department/meetings/{meeting.pk}", **headers).status_code == 403
    response = client.post(
        f"/api/department/meetings/{meeting.pk}/agenda", {"request_id": complete_request.pk}, content_type="application/json", **headers
    )
    assert response.status_code == 403
    assert client.post("/api/department/meetings", {"starts_at": f"{meeting_day(2)}T14:00:00+01:00"}, content_type="application/json", **headers).status_code == 403


@pytest.mark.parametrize(("role", "status"), [("head", 200), ("staff", 200), ("oncologist", 403), ("physicist", 403), ("patient", 403), ("doctor", 403)])
def test_activity_api_per_role(client, users, role, status):
    response = client.get("/api/department/activity", **bearer(users[role]))
    assert response.status_code == status
    if status == 200:
        body = response.json()
        assert body["reference_sessions"] == 2373 and body["sessions_are_estimates"] is True


def test_the_catalogue_is_public(client):
    catalogue = client.get("/api/department/indications").json()
    assert {"code": "paed-neuroblastoma", "population": "paediatric", "label_en": "Tumours of the nervous system: neuroblastomas",
            "label_fr": "Tumeurs du système nerveux : neuroblastomes"} in catalogue
    assert len(catalogue) == 13
