"""Fixtures for patients from abroad: the illustrative tariff in the database, an accepted request."""

from __future__ import annotations

import datetime

import pytest

from protonpath.international import services
from tests.factories import advance_to, make_request


@pytest.fixture
def tariff(db):
    services.load_illustrative_tariff(valid_from=datetime.date(2026, 1, 1))


@pytest.fixture
def accepted(tariff, patient, staff, oncologist):
    """An accepted request of a Moroccan patient (30 fractions), owned by ``patient``."""
    return advance_to(make_request(patient), "accepted", staff=staff, oncologist=oncologist)


@pytest.fixture
def sent_quote(accepted, staff):
    quote = services.build_quote(actor=staff, treatment_request=accepted)
    return services.send_quote(actor=staff, quote=quote)


@pytest.fixture
def accepted_quote(sent_quote, patient):
    return services.accept_quote(actor=patient, quote=sent_quote)
