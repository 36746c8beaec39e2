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
