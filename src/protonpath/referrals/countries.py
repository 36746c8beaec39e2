"""Country names in the reader's language, from pycountry and its ``iso3166-1`` translations.

One place for every page, form and document that names a country (nationality, country of
residence): the referral forms and the request page here, the quotes, visa letters and travellers
of :mod:`protonpath.international` (which may import referrals, not the other way round).

The English name is pycountry's common name where it has one ("Bolivia", "South Korea"), else its
short name; other languages translate that name with pycountry's gettext catalogue (falling back
to the translated short name, then to English). Lists are sorted by the localised name without
regard to case or accents, so that "Égypte" sorts among the E, not after "Zimbabwe".
"""

from __future__ import annotations

import gettext
import unicodedata
from dataclasses import dataclass
from functools import cache

import pycountry
from django import forms
from django.core.exceptions import ValidationError
from django.utils import translation
from django.utils.translation import gettext_lazy

#: pycountry's names are English: no catalogue needed.
ENGLISH = "en"


def _language(language: str | None) -> str:
    """``"fr"`` for ``"fr"``, ``"fr-ca"``, ``"fr_FR"``; the active language when None."""
    code = language if language is not None else (translation.get_language() or ENGLISH)
    return code.replace("_", "-").split("-")[0].lower() or ENGLISH


@cache
def _catalogue(language: str) -> gettext.NullTranslations:
    return gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[language], fallback=True)


@dataclass(frozen=True)
class _Extra:
    """A nationality ISO 3166 leaves to user-assigned codes but the visa lists name (Kosovo)."""

    alpha_2: str
    alpha_3: str
    name: str
    common_name: str | None = None


#: Kosovo (XK), as the EU visa regulation and passports use it; not in pycountry's ISO list.
EXTRA_COUNTRIES = (_Extra("XK", "XKX", "Kosovo"),)


def _lookup(code: str):
    normalised = (code or "").strip().upper()
    if len(normalised) not in (2, 3) or not normalised.isalpha():
        return None
    field = "alpha_2" if len(normalised) == 2 else "alpha_3"
    for extra in EXTRA_COUNTRIES:
        if getattr(extra, field) == normalised:
            return extra
    try:
        return pycountry.countries.get(**{field: normalised})
    except KeyError:  # older pycountry raised instead of returning None
        return None


def _all_countries():
    return (*pycountry.countries, *EXTRA_COUNTRIES)


def _name(country, language: str) -> str:
    common = getattr(country, "common_name", None)
    english = common or country.name
    if language == ENGLISH:
        return english
    catalogue = _catalogue(language)
    for source in (english, country.name):
        translated = catalogue.gettext(source)
        if translated != source:
            return translated
    return english


def country_name(code: str, language: str | None = None) -> str:
    """The name of the country with ISO 3166-1 alpha-2 or alpha-3 ``code`` (any case), in
    ``language`` (the active Django language by default); the code itself when unknown."""
    country = _lookup(code)
    if country is None:
        return code or ""
    return _name(country, _language(language))


def sort_key(text: str) -> str:
    """Case- and accent-insensitive sort key ("Égypte" sorts with "Egypte", "Åland" with "Aland")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@cache
def _choices(language: str) -> tuple[tuple[str, str], ...]:
    named = ((c.alpha_2, _name(c, language)) for c in _all_countries())
    return tuple(sorted(named, key=lambda item: (sort_key(item[1]), item[1])))


def country_choices(language: str | None = None) -> list[tuple[str, str]]:
    """``[("", "—"), (alpha_2, name)...]`` in ``language`` (the active one by default), sorted by
    the localised name. Give the function itself (not its result) to a form field's ``choices``
    so that it is called when the form is shown, in the language of that request."""
    return [("", "—"), *_choices(_language(language))]


def is_country_code(code: str) -> bool:
    """True for an ISO 3166-1 alpha-2 code of a known country, in capitals (as stored)."""
    return isinstance(code, str) and len(code) == 2 and code.isupper() and _lookup(code) is not None


#: Why a country is refused, in the reader's language.
NOT_A_COUNTRY = gettext_lazy(
    "%(value)s is not a country code: choose the country from the list (ISO 3166-1 code such as DZ, MA, FR)."
)


def validate_country_code(value: str) -> None:
    """Model and form validator: a stored country is a known ISO alpha-2 code ("DZ", not "Algeria")."""
    if not is_country_code(value):
        raise ValidationError(NOT_A_COUNTRY, code="country", params={"value": str(value)[:40]})


@cache
def _names_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for country in _all_countries():
        names = {country.name, getattr(country, "common_name", None) or "", getattr(country, "official_name", "") or ""}
        names |= {_name(country, "fr")}
        for name in names:
            if name:
                index.setdefault(sort_key(name), country.alpha_2)
    return index


def code_for(text: str) -> str | None:
    """The alpha-2 code of the country ``text`` names: a code (alpha-2 or alpha-3, any case) or a
    name in English or French ("Algeria", "Algérie"); None when it names no country. For cleaning
    data entered as free text, never to guess from two letters typed for a name."""
    value = (text or "").strip()
    country = _lookup(value)
    if country is not None:
        return country.alpha_2
    return _names_index().get(sort_key(value))


class CountrySelect(forms.Select):
    """A select of the countries in the reader's language. Without script, browsers select by
    typing the first letters; static/protonpath/countries.js adds a box that filters the list by
    any part of the name or by code, without case or accents."""

    def __init__(self, attrs=None):
        base = {
            "data-country-filter": "",
            "data-filter-label": gettext_lazy("Type to filter the countries"),
            "autocomplete": "country",
        }
        super().__init__({**base, **(attrs or {})})


class CountryField(forms.ChoiceField):
    """A country chosen from the list, stored as its ISO 3166-1 alpha-2 code."""

    widget = CountrySelect

    def __init__(self, **kwargs):
        kwargs.setdefault("choices", country_choices)
        kwargs.setdefault("error_messages", {"invalid_choice": NOT_A_COUNTRY})
        super().__init__(**kwargs)
        self.validators.append(validate_country_code)

    def to_python(self, value):
        # A code sent in small letters ("ma", from a script or an old page) is the same country.
        return super().to_python(value).strip().upper()
