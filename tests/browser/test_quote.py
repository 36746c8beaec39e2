"""A patient from abroad signs in, opens the quote the department sent, and accepts it."""

import datetime

import pytest

from protonpath.international import services
from protonpath.international.models import Quote, QuoteStatus
from protonpath.referrals.models import State, TreatmentRequest
from tests.browser.conftest import login
from tests.factories import PASSWORD, advance_to, make_request


@pytest.mark.django_db(transaction=True)
def test_a_foreign_patient_accepts_the_quote_online(page, screenshot, patient, staff, oncologist):
    services.load_illustrative_tariff(valid_from=datetime.date(2026, 1, 1))
    r = advance_to(make_request(patient), "accepted", staff=staff, oncologist=oncologist)
    quote = services.send_quote(actor=staff, quote=services.build_quote(actor=staff, treatment_request=r))

    login(page, patient.username, PASSWORD)
    page.goto(f"/requests/{r.pk}/")
    page.wait_for_selector("#international")
    assert quote.number in page.inner_text("#international")
    screenshot("request-page-with-quote")

    page.click("#open-quote")
    page.wait_for_selector("#accept-quote")
    assert "Proton therapy session (fraction)" in page.inner_text("main")
    assert "Additional costs to plan for" in page.inner_text("main")
    screenshot("quote-sent")

    page.click("#accept-quote")
    page.wait_for_load_state("networkidle")
    assert "you have accepted the quote" in page.inner_text(".messages")
    assert page.inner_text("#quote-status") == "Accepted"
    assert page.locator("#accept-quote").count() == 0
    screenshot("quote-accepted")

    assert Quote.objects.get(pk=quote.pk).status == QuoteStatus.ACCEPTED
    assert TreatmentRequest.objects.get(pk=r.pk).state == State.QUOTE_ACCEPTED
