"""The JSON API for quotes, payments and the visa assessment: same rules as the pages."""

import datetime
from decimal import Decimal

import pytest

from protonpath.accounts.models import ApiToken
from protonpath.international.models import Payment, QuoteStatus
from protonpath.referrals.models import State

pytestmark = pytest.mark.django_db


class Api:
    def __init__(self, client, user):
        _, raw = ApiToken.issue(user=user, name="test")
        self.client = client
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}

    def get(self, url):
        return self.client.get(url, **self.headers)

    def post(self, url, json=None):
        return self.client.post(url, json or {}, content_type="application/json", **self.headers)


def test_quote_walk_through_the_api(client, accepted, staff, patient):
    staff_api, patient_api = Api(client, staff), Api(client, patient)
    built = staff_api.post(f"/api/international/requests/{accepted.pk}/quotes", {"consultations": 6, "imaging": {"imaging_ct_planning": 1}})
    assert built.status_code == 201, built.content
    quote = built.json()
    assert quote["status"] == "draft" and quote["fractions"] == 30
    assert {line["code"] for line in quote["lines"]} == {"consultation_oncologist", "imaging_ct_planning", "treatment_planning", "proton_fraction"}
    assert Decimal(quote["total_eur"]) == Decimal(6 * 120 + 350 + 6500 + 30 * 1250)
    # The patient does not see the draft.
    assert patient_api.get(f"/api/international/quotes/{quote['id']}").status_code == 404
    assert patient_api.get(f"/api/international/requests/{accepted.pk}/quotes").json() == []
    sent = staff_api.post(f"/api/international/quotes/{quote['id']}/send")
    assert sent.status_code == 200 and sent.json()["status"] == "sent"
    assert patient_api.post(f"/api/international/quotes/{quote['id']}/refuse", {"reason": ""}).status_code == 400
    accepted_ = patient_api.post(f"/api/international/quotes/{quote['id']}/accept")
    assert accepted_.status_code == 200 and accepted_.json()["status"] == QuoteStatus.ACCEPTED
    # Payments: staff only; a partial payment does not allow the full-payment step.
    payment = {"amount_eur": "20000.00", "paid_on": datetime.date.today().isoformat(), "method": "bank_transfer", "reference": "VIR-9"}
    assert patient_api.post(f"/api/international/quotes/{quote['id']}/payments", payment).status_code == 403
    assert staff_api.post(f"/api/international/quotes/{quote['id']}/payments", payment).status_code == 201
    refused = staff_api.post(f"/api/international/requests/{accepted.pk}/full-payment")
    assert refused.status_code == 400 and "not paid in full" in str(refused.json()["detail"])
    rest = dict(payment, amount_eur=str(Decimal(quote["total_eur"]) - Decimal("20000.00")), reference="VIR-10")
    staff_api.post(f"/api/international/quotes/{quote['id']}/payments", rest)
    balance = patient_api.get(f"/api/international/quotes/{quote['id']}/payments").json()["balance"]
    assert balance["paid_in_full"] is True and Decimal(balance["balance_due_eur"]) == 0
    done = staff_api.post(f"/api/international/requests/{accepted.pk}/full-payment")
    assert done.status_code == 200
    accepted.refresh_from_db()
    assert accepted.state == State.PAID


def test_bad_payment_through_the_api_is_refused(client, accepted_quote, staff):
    api = Api(client, staff)
    bad = api.post(
        f"/api/international/quotes/{accepted_quote.pk}/payments",
        {"amount_eur": "10", "paid_on": datetime.date.today().isoformat(), "method": "card", "reference": "R", "kind": "refund"},
    )
    assert bad.status_code == 400 and "exceed" in str(bad.json()["detail"])
    wrong_method = api.post(
        f"/api/international/quotes/{accepted_quote.pk}/payments",
        {"amount_eur": "10", "paid_on": datetime.date.today().isoformat(), "method": "bitcoin", "reference": "R"},
    )
    assert wrong_method.status_code == 422
    assert not Payment.objects.exists()


def test_visa_assessment_through_the_api(client, accepted, patient):
    body = Api(client, patient).get(f"/api/international/requests/{accepted.pk}/visa").json()
    assert body["travellers"][0]["role"] == "patient"
    assert body["travellers"][0]["nationality"] == "MA"
    assert body["travellers"][0]["requirement"] == "short_stay_visa"
    assert body["stay_days"] > 40 and "2018/1806" in body["legal_source"]


@pytest.mark.parametrize("role", ["other_patient", "other_doctor", "physicist"])
def test_others_get_404_from_the_api(client, sent_quote, users, role):
    api = Api(client, users[role])
    r = sent_quote.treatment_request
    assert api.get(f"/api/international/quotes/{sent_quote.pk}").status_code == 404
    assert api.get(f"/api/international/requests/{r.pk}/visa").status_code == 404
    assert api.get(f"/api/international/requests/{r.pk}/quotes").status_code == 404
    assert api.post(f"/api/international/quotes/{sent_quote.pk}/accept").status_code == 404


def test_quote_pdf_through_the_api(client, sent_quote, patient):
    response = Api(client, patient).get(f"/api/international/quotes/{sent_quote.pk}/pdf?lang=fr")
    assert response.status_code == 200 and response.content.startswith(b"%PDF-")


def test_openapi_lists_the_international_operations(client):
    paths = client.get("/api/openapi.json").json()["paths"]
    for path in (
        "/api/international/requests/{request_id}/quotes",
        "/api/international/quotes/{quote_id}/accept",
        "/api/international/quotes/{quote_id}/payments",
        "/api/international/requests/{request_id}/visa",
    ):
        assert path in paths, path
