"""The demo seed: illustrative tariff and a sent quote for the demo patient, once."""

import io

import pytest
from django.core.management import call_command

from protonpath.international.models import Quote, QuoteStatus, Tariff

pytestmark = pytest.mark.django_db


def test_seed_demo_sends_one_quote_and_is_idempotent():
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", stdout=io.StringIO())
    quote = Quote.objects.get()
    assert quote.status == QuoteStatus.SENT
    assert quote.treatment_request.state == "quote_sent"
    assert quote.treatment_request.submitted_by.username == "patient"
    assert Tariff.objects.filter(illustrative=True).count() == 8
