"""Every page of the site, called with the values that broke some of them: integers past 64 bits,
the calendar's first and last days. Whatever the role and the method, no page may answer with a
server error (a refusal, a 404 or a form error is the answer)."""

from __future__ import annotations

import datetime

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import make_request
from tests.urlwalk import HUGE_INT, _is_date, extreme_urls, routes

pytestmark = pytest.mark.django_db

ROUTES = routes()


def _client(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def test_the_walk_finds_the_pages_with_parameters():
    names = {r.name for r in ROUTES}
    assert {"referrals:merge", "referrals:detail", "scheduling:agenda", "international:stay_delete"} <= names
    merge = next(r for r in ROUTES if r.name == "referrals:merge")
    assert f"/requests/patients/merge/{HUGE_INT}/1/" in extreme_urls(merge)
    agenda = next(r for r in ROUTES if r.name == "scheduling:agenda")
    assert set(extreme_urls(agenda)) == {"/scheduling/agenda/0001-01-01/", "/scheduling/agenda/9999-12-31/"}


@pytest.mark.parametrize("role", ["staff", "head", "patient"])
def test_no_page_fails_on_extreme_path_values(users, role):
    make_request(users["patient"])
    client = _client(users[role])
    failures = []
    for route in ROUTES:
        for url in extreme_urls(route):
            for method in ("get", "post"):
                response = getattr(client, method)(url)
                if response.status_code >= 500:
                    failures.append((method.upper(), url, response.status_code))
    assert failures == []


_ints = st.one_of(st.integers(min_value=0), st.integers(min_value=2**31 - 2, max_value=10**30))


def _values(converter):
    if _is_date(converter):
        return st.dates().map(datetime.date.isoformat)
    if converter.regex == "[0-9]+":
        return _ints.map(str)
    return st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True)


def _sweep(route, strategy, client, failures):
    @given(values=strategy)
    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
    def call(values):
        url = route.fill(values)
        response = client.get(url)
        if response.status_code >= 500:
            failures.append((url, response.status_code))

    call()


@pytest.mark.slow
def test_no_page_fails_on_generated_path_values(users):
    """Hypothesis draws the values (dates over the whole calendar, integers of any size)."""
    make_request(users["patient"])
    client = _client(users["staff"])
    failures = []
    for route in [r for r in ROUTES if r.converters]:
        strategy = st.fixed_dictionaries({name: _values(c) for name, c in route.converters.items()})
        _sweep(route, strategy, client, failures)
    assert failures == []
