"""Country names follow the reader's language: the request form's choices, the request page, and
the documents for patients from abroad (one helper, protonpath.referrals.countries)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import translation

from protonpath.international import formatting
from protonpath.referrals import countries
from protonpath.referrals.forms import PatientForm
from tests.factories import PASSWORD, make_request


def options(page: str) -> list[tuple[str, str]]:
    select = re.search(r'<select name="[^"]*nationality"[^>]*>(.*?)</select>', page, re.S).group(1)
    return re.findall(r'<option value="([A-Z]*)"[^>]*>([^<]*)</option>', select)


@pytest.mark.django_db
@pytest.mark.parametrize("language, germany", [("fr", "Allemagne"), ("en", "Germany")])
def test_the_request_form_names_the_countries_in_the_reader_s_language(client, doctor, language, germany):
    assert client.login(username=doctor.username, password=PASSWORD)
    page = client.get(reverse("referrals:new"), HTTP_ACCEPT_LANGUAGE=language).content.decode()
    choices = dict(options(page))
    assert choices["DE"] == germany
    assert f'<option value="DE">{germany}</option>' in page
    assert "country_of_residence" in page


@pytest.mark.django_db
def test_one_process_serves_both_languages_one_after_the_other(client, doctor):
    """The choices are computed when each form is shown, not once at import time."""
    assert client.login(username=doctor.username, password=PASSWORD)
    for language, germany in [("en", "Germany"), ("fr", "Allemagne"), ("en", "Germany")]:
        page = client.get(reverse("referrals:new"), HTTP_ACCEPT_LANGUAGE=language).content.decode()
        assert dict(options(page))["DE"] == germany


def test_french_choices_are_sorted_by_their_french_name_ignoring_accents():
    with translation.override("fr"):
        names = [name for code, name in PatientForm().fields["nationality"].choices if code]
    assert names.index("Égypte") < names.index("Espagne") < names.index("États-Unis") < names.index("Éthiopie")
    assert names.index("Allemagne") < names.index("Belgique") and names[-1] != "Égypte"
    assert names == sorted(names, key=countries.sort_key)
    with translation.override("en"):
        english = [name for code, name in PatientForm().fields["nationality"].choices if code]
    assert english.index("Egypt") < english.index("Germany") and "Bolivia" in english


def test_the_form_accepts_a_code_whatever_the_language():
    with translation.override("fr"):
        form = PatientForm(data={"nationality": "DE", "country_of_residence": "FR"})
        form.is_valid()
    assert "nationality" not in form.errors and "country_of_residence" not in form.errors


@pytest.mark.django_db
def test_the_request_page_names_the_nationality_in_the_reader_s_language(client, doctor):
    r = make_request(doctor)  # a patient from Morocco
    assert client.login(username=doctor.username, password=PASSWORD)
    url = reverse("referrals:detail", args=[r.pk])
    assert "<dd>Maroc</dd>" in client.get(url, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "<dd>Morocco</dd>" in client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_international_documents_use_the_same_names():
    assert formatting.country_name("DE", "fr") == countries.country_name("DE", "fr") == "Allemagne"
    assert formatting.country_name("dza", "fr-fr") == "Algérie"
    assert formatting.country_name("BO", "en") == "Bolivia" and formatting.country_name("BO", "fr") == "Bolivie"
    assert formatting.country_name("XK", "fr") == "Kosovo"  # user-assigned code, a nationality of the visa lists
    with translation.override("fr"):
        assert countries.country_name("KR") == "Corée du Sud"
