"""Every refusal leaves one "denied" row in the audit trail, whichever page or API operation
refused and however it refused (PermissionDenied, a 403 answer, a 404 that hides another owner's
object). The sweep walks every URL pattern and every API operation as a user who may not use
it, so a page added later is swept too."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from protonpath.accounts.models import ApiToken, AuditEvent
from tests.factories import make_request
from tests.test_openapi_fuzz import _deref, _ordinary
from tests.urlwalk import ordinary_value, routes

pytestmark = pytest.mark.django_db

#: Pages any signed-in user may use (their own profile, their own list, a new request, ...).
OPEN_TO_EVERY_USER = {
    "home", "favicon", "set_language", "accounts:login", "accounts:logout", "accounts:signup", "accounts:profile",
    "accounts:password_reset", "accounts:password_reset_done", "accounts:password_reset_confirm",
    "accounts:password_reset_complete", "referrals:list", "referrals:new", "department:about",
}
#: API operations any signed-in user may use (about themselves, their own requests, the directory).
OPEN_API = {
    ("get", "/api/me"), ("get", "/api/requests"), ("post", "/api/requests"),
    ("get", "/api/department/team"), ("get", "/api/department/services"), ("get", "/api/department/indications"),
}


@pytest.fixture
def others_data(users):
    """Another patient's request with its medical file, and a doctor's patient beside it."""
    mine = make_request(users["patient"])
    doctors = make_request(users["doctor"])
    return {"request": mine, "document": mine.documents.first(), "patients": (mine.patient_id, doctors.patient_id)}


def _values(route, data) -> dict[str, str]:
    values = {name: ordinary_value(c) for name, c in route.converters.items()}
    if "keep" in values:
        values["keep"], values["remove"] = (str(pk) for pk in data["patients"])
    elif "pk" in values and route.name.startswith("referrals:"):
        values["pk"] = str(data["document"].pk if "document" in route.name else data["request"].pk)
    elif "pk" in values and "/requests/" in route.route:
        values["pk"] = str(data["request"].pk)
    return values


def _denied() -> int:
    return AuditEvent.objects.filter(action=AuditEvent.Action.DENIED).count()


def test_every_page_refused_leaves_one_denied_row(users, others_data):
    client = Client(raise_request_exception=False)
    client.force_login(users["other_patient"])
    wrong = []
    swept = 0
    for route in routes():
        if route.name in OPEN_TO_EVERY_USER:
            continue
        url = route.fill(_values(route, others_data))
        before = _denied()
        response = client.get(url)
        if response.status_code == 405:
            before = _denied()
            response = client.post(url)
        swept += 1
        rows = _denied() - before
        if response.status_code not in (403, 404) or rows != 1:
            wrong.append((route.name, url, response.status_code, rows))
    assert swept > 40
    assert wrong == []


def test_staff_refusals_leave_one_denied_row(users):
    """A physicist on the pages of administrative staff and the head (tariffs, downtimes,
    sessions, meetings, queues): one row each."""
    client = Client(raise_request_exception=False)
    client.force_login(users["physicist"])
    wrong = []
    for method, url in [
        ("post", "/international/tariffs/"),
        ("post", "/scheduling/downtimes/new/"),
        ("post", "/scheduling/sessions/1/record/"),
        ("get", "/department/meetings/"),
        ("post", "/department/agenda/add/"),
        ("get", "/department/activity/"),
        ("get", "/requests/patients/duplicates/"),
    ]:
        before = _denied()
        response = getattr(client, method)(url)
        rows = _denied() - before
        if response.status_code not in (403, 404) or rows != 1:
            wrong.append((method, url, response.status_code, rows))
    assert wrong == []


def test_every_api_operation_refused_leaves_one_denied_row(client, users, others_data):
    from protonpath.api import api

    client.raise_request_exception = False
    token = ApiToken.issue(user=users["other_patient"], name="sweep")[1]
    headers = {"Authorization": f"Bearer {token}"}
    schema = api.get_openapi_schema()
    components = schema.get("components", {}).get("schemas", {})
    wrong = []
    statuses = []
    swept = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if (method, path) in OPEN_API:
                continue
            url = path
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    value = others_data["document"].pk if "document" in parameter["name"] else others_data["request"].pk
                    url = url.replace("{" + parameter["name"] + "}", str(value))
            body_schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            # A body of plausible values, so that the refusal is reached rather than a 422.
            properties = _deref(body_schema, components).get("properties", {}) if body_schema else {}
            body = {name: _ordinary(s, components) for name, s in properties.items()}
            before = _denied()
            if method == "get":
                response = client.get(url, headers=headers)
            else:
                response = getattr(client, method)(url, json.dumps(body), content_type="application/json", headers=headers)
            swept += 1
            statuses.append(response.status_code)
            rows = _denied() - before
            if response.status_code not in (403, 404, 422, 400) or (response.status_code in (403, 404) and rows != 1):
                wrong.append((method.upper(), url, response.status_code, rows))
    assert swept > 25
    assert wrong == []
    # Most operations get as far as their refusal (not a 422 on the body).
    assert sum(code in (403, 404) for code in statuses) >= 0.8 * swept, statuses
