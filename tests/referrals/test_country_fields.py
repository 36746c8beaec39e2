"""Every country field is a choice of countries in the reader's language, stored as ISO codes
(issue 12, 2): an accompanying person's nationality was a two-letter text box, and typing
"Algeria" saved "AL", Albania, which the visa rule and the consulate letter then followed."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import connection
from django.urls import reverse
from django.utils import translation

from protonpath.accounts.models import ApiToken
from protonpath.international.forms import CompanionForm
from protonpath.international.models import AccompanyingPerson
from protonpath.referrals.countries import CountrySelect, code_for
from protonpath.referrals.forms import PatientForm, TreatmentRequestForm
from protonpath.referrals.models import Patient, TreatmentRequest
from tests.factories import make_request, patient_data, request_data

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english_afterwards():
    """Pages served in French leave French active in the thread: the next test starts in English."""
    with translation.override("en"):
        yield


def _jsonable(data):
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in data.items()}


@pytest.mark.parametrize(
    "form, field",
    [
        (CompanionForm, "nationality"),
        (PatientForm, "nationality"),
        (PatientForm, "country_of_residence"),
        (TreatmentRequestForm, "addressee_country"),
    ],
)
def test_every_country_field_is_a_filterable_list_in_the_readers_language(form, field):
    bound = form()[field]
    assert isinstance(bound.field.widget, CountrySelect)
    with translation.override("fr"):
        html = str(bound)
        labels = [label for code, label in bound.field.choices if code]
    assert html.startswith("<select") and "data-country-filter" in html
    assert "Filtrez" in html or "filtrer" in html  # the filter box's label, in French
    assert '<option value="DZ">Algérie</option>' in html and '<option value="AL">Albanie</option>' in html
    assert labels.index("Égypte") < labels.index("Érythrée") < labels.index("Espagne") < labels.index("Zimbabwe")
    with translation.override("en"):
        assert '<option value="DZ">Algeria</option>' in str(form()[field])


def test_a_companion_named_algeria_is_refused_and_dz_is_algeria(client, patient, staff, oncologist):
    from tests.factories import advance_to

    r = advance_to(make_request(patient), "accepted", staff=staff, oncologist=oncologist)
    client.force_login(patient)
    url = reverse("international:travellers", args=[r.pk])
    page = client.get(url).content.decode()
    assert 'name="companion-nationality"' in page and 'maxlength="2"' not in page.split('name="companion-nationality"')[1][:200]
    data = {"companion-first_name": "Karim", "companion-last_name": "Benali", "companion-relationship": "father"}
    for typed in ("Algeria", "AL Algeria", "ZZ"):
        refused = client.post(url, {**data, "companion-nationality": typed})
        assert refused.status_code == 400 and "is not a country code" in refused.content.decode()
    assert not AccompanyingPerson.objects.exists()
    assert client.post(url, {**data, "companion-nationality": "DZ"}).status_code == 302
    assert AccompanyingPerson.objects.get().nationality == "DZ"
    with translation.override("fr"):
        assert "Algérie" in client.get(url, HTTP_ACCEPT_LANGUAGE="fr").content.decode()


def test_the_api_refuses_unknown_country_codes_and_saves_nothing(client, patient):
    _, raw = ApiToken.issue(user=patient, name="test")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    for patient_override, request_override in [
        ({"nationality": "Algeria"}, {}),
        ({"nationality": "ZZ"}, {}),
        ({"country_of_residence": "XX"}, {}),
        ({}, {"addressee_country": "Maroc"}),
    ]:
        body = {"patient": _jsonable(patient_data(**patient_override)), "request": request_data(**request_override)}
        answer = client.post("/api/requests", body, content_type="application/json", **headers)
        assert answer.status_code == 400, (patient_override, request_override, answer.content)
        assert "not a country code" in answer.content.decode()
    assert not Patient.objects.exists() and not TreatmentRequest.objects.exists()
    body = {"patient": _jsonable(patient_data(nationality="dz")), "request": request_data(addressee_country="FR")}
    created = client.post("/api/requests", body, content_type="application/json", **headers)
    assert created.status_code == 201, created.content
    assert created.json()["patient"]["nationality"] == "DZ" and created.json()["addressee_country"] == "FR"


def test_the_addressee_country_is_chosen_and_shown_by_name(client, doctor):
    r = make_request(doctor, complete=False, submit=False, addressee_country="DZ")
    client.force_login(doctor)
    assert "Algeria" in client.get(reverse("referrals:detail", args=[r.pk])).content.decode()
    client.cookies["django_language"] = "fr"
    html = client.get(reverse("referrals:detail", args=[r.pk]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Algérie" in html


def test_names_typed_before_become_codes(patient):
    """The data migrations: names and alpha-3 codes typed earlier become alpha-2 codes; two
    letters are never re-read, and a value naming no country stays for a person to correct."""
    r = make_request(patient, complete=False, submit=False)
    # SQLite keeps whatever text was typed; PostgreSQL keeps two letters at most, in any case.
    names_fit = connection.vendor == "sqlite"
    Patient.objects.filter(pk=r.patient_id).update(
        nationality="Algeria" if names_fit else "dz", country_of_residence="maroc" if names_fit else "ma"
    )
    typed = {"dz": "DZ", "AL": "AL", "Zz": "Zz"} | ({"Algérie": "DZ", "DZA": "DZ", "Atlantis": "Atlantis"} if names_fit else {})
    companions = {
        value: AccompanyingPerson.objects.create(
            treatment_request=r, first_name="A", last_name="B", nationality=value, relationship="son"
        )
        for value in typed
    }
    importlib.import_module("protonpath.referrals.migrations.0003_country_codes").codes_from_names(apps, None)
    importlib.import_module("protonpath.international.migrations.0002_companion_country_codes").codes_from_names(apps, None)
    p = Patient.objects.get(pk=r.patient_id)
    assert (p.nationality, p.country_of_residence) == ("DZ", "MA")
    assert {value: AccompanyingPerson.objects.get(pk=c.pk).nationality for value, c in companions.items()} == typed
    assert code_for("Algeria") == "DZ" and code_for("Albania") == "AL" and code_for("Kosovo") == "XK"
