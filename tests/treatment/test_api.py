"""The planning API (/api/treatment/): same rules as the pages, for every role."""

from __future__ import annotations

import pytest

from protonpath.accounts.models import ApiToken
from protonpath.treatment import services
from protonpath.treatment.models import PlanState
from tests.treatment.test_services import make_plan


def bearer(user):
    _token, raw = ApiToken.issue(user=user, name="test")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


@pytest.mark.django_db
def test_plan_endpoints_by_role(client, planning_request, users, physicist, oncologist, django_capture_on_commit_callbacks):
    r = planning_request
    plan = make_plan(r, physicist, oncologist)
    staff_roles = ("staff", "oncologist", "physicist", "head")
    for name in ("patient", "other_patient", "doctor", "other_doctor"):
        h = bearer(users[name])
        assert client.get(f"/api/treatment/plans/{plan.pk}", **h).status_code == 404
        assert client.get(f"/api/treatment/requests/{r.pk}/plans", **h).status_code == 404
        assert client.post(f"/api/treatment/plans/{plan.pk}/calculate", **h).status_code == 404
        assert client.post(f"/api/treatment/plans/{plan.pk}/approve", **h).status_code == 404
    assert client.get(f"/api/treatment/requests/{r.pk}/summary", **bearer(users["doctor"])).json()["prescription"]["fractions"] == 30
    assert client.get(f"/api/treatment/requests/{r.pk}/summary", **bearer(users["other_doctor"])).status_code == 404
    for name in staff_roles:
        h = bearer(users[name])
        assert client.get(f"/api/treatment/plans/{plan.pk}", **h).json()["state"] == "draft"
        assert [p["id"] for p in client.get(f"/api/treatment/requests/{r.pk}/plans", **h).json()] == [plan.pk]
    for name in ("staff", "oncologist", "head"):
        assert client.post(f"/api/treatment/plans/{plan.pk}/calculate", **bearer(users[name])).status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        resp = client.post(f"/api/treatment/plans/{plan.pk}/calculate", **bearer(physicist))
    assert resp.status_code == 200
    body = client.get(f"/api/treatment/plans/{plan.pk}", **bearer(physicist)).json()
    assert body["state"] == PlanState.CALCULATED and "PTV_60" in body["statistics"]
    assert client.post(f"/api/treatment/plans/{plan.pk}/approve", **bearer(oncologist)).status_code == 400
    assert client.post(f"/api/treatment/plans/{plan.pk}/approve", **bearer(physicist)).json()["state"] == "physicist_approved"
    assert client.post(f"/api/treatment/plans/{plan.pk}/cancel", **bearer(physicist)).status_code == 400
    assert services.current_prescription(r).version == 1
