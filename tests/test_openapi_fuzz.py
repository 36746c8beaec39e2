"""Property-based checks of the whole JSON API against its own OpenAPI document (schemathesis).

Every operation of every app is called with input generated from the schema, signed in as
administrative staff and as a patient: none may answer with a server error.
"""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings

from protonpath.accounts.models import ApiToken
from tests.factories import make_request

pytestmark = pytest.mark.django_db


@pytest.fixture
def api_schema():
    from protonpath.wsgi import application

    # As Django's test client does: the requests run inside the test's transaction, so the
    # end of a request must not close the database connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/openapi.json", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.parametrize("role", ["staff", "patient"])
def test_api_never_fails_on_generated_input(api_schema, users, role):
    make_request(users["patient"])
    token = ApiToken.issue(user=users[role], name="fuzz")[1]
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    failures = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
        def call(case):
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            if response.status_code >= 500:
                failures.append((case.method, case.formatted_path, response.status_code))

        call()
    assert failures == []


# Schemathesis draws from the whole range of each type but rarely its ends; the sweep found the
# ends break operations (an offset past 64 bits, the calendar's first and last days). Every
# operation is also called with each integer parameter (path, query, JSON body) past 64 bits or
# zero, and each date at the calendar's ends.
HUGE = 99999999999999999999
EXTREMES = {"integer": [HUGE, 0], "date": ["0001-01-01", "9999-12-31"], "date-time": ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]}


def _kind(schema: dict, components: dict) -> str:
    schema = _deref(schema, components)
    for alternative in schema.get("anyOf", []):
        kind = _kind(alternative, components)
        if kind != "other":
            return kind
    if schema.get("type") == "integer":
        return "integer"
    if schema.get("type") == "string" and schema.get("format") in ("date", "date-time"):
        return schema["format"]
    return "other"


def _deref(schema: dict, components: dict) -> dict:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _ordinary(schema: dict, components: dict):
    schema = _deref(schema, components)
    if "anyOf" in schema:
        schema = _deref(next(s for s in schema["anyOf"] if s.get("type") != "null"), components)
    if "enum" in schema:
        return schema["enum"][0]
    return {
        "integer": 1,
        "date": "2026-12-01",
        "date-time": "2026-12-01T10:00:00Z",
    }.get(_kind(schema, components), {"number": 1, "boolean": True, "array": [], "object": {}}.get(schema.get("type"), "x"))


def _extreme_calls(schema: dict):
    """(method, path, query, body) for each parameter or body field at each of its extremes."""
    components = schema.get("components", {}).get("schemas", {})
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            params = operation.get("parameters", [])
            body_schema = (
                operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            )
            body_props = _deref(body_schema, components).get("properties", {}) if body_schema else {}
            ordinary_params = {p["name"]: _ordinary(p["schema"], components) for p in params}
            ordinary_body = {name: _ordinary(s, components) for name, s in body_props.items()}
            targets = [("param", p["name"], _kind(p["schema"], components)) for p in params]
            targets += [("body", name, _kind(s, components)) for name, s in body_props.items()]
            for where, name, kind in targets:
                for value in EXTREMES.get(kind, []):
                    values = dict(ordinary_params)
                    body = dict(ordinary_body) if body_schema else None
                    if where == "param":
                        values[name] = value
                    else:
                        body[name] = value
                    url = path
                    query = {}
                    for p in params:
                        if p["in"] == "path":
                            url = url.replace("{" + p["name"] + "}", str(values[p["name"]]))
                        elif p["in"] == "query" and (p.get("required") or p["name"] == name):
                            # Optional query parameters other than the one under test are left out.
                            query[p["name"]] = values[p["name"]]
                    yield method, url, query, body


@pytest.mark.parametrize("role", ["staff", "head", "patient"])
def test_api_never_fails_on_extreme_values(client, users, role):
    import json

    from protonpath.api import api

    make_request(users["patient"])
    client.raise_request_exception = False
    token = ApiToken.issue(user=users[role], name="fuzz")[1]
    calls = list(_extreme_calls(api.get_openapi_schema()))
    assert any(q.get("offset") == HUGE for _m, _u, q, _b in calls)
    failures = []
    for method, url, query, body in calls:
        if method == "get":
            response = client.get(url, query, headers={"Authorization": f"Bearer {token}"})
        else:
            path = url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
            response = getattr(client, method)(
                path, json.dumps(body or {}), content_type="application/json", headers={"Authorization": f"Bearer {token}"}
            )
        if response.status_code >= 500:
            failures.append((method.upper(), url, query, body, response.status_code))
    assert failures == []
