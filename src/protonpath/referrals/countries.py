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
from functools import cache

import pycountry
from django.utils import translation

#: pycountry's names are English: no catalogue needed.
ENGLISH = "en"


def _language(language: str | None) -> str:
    """``"fr"`` for ``"fr"``, ``"fr-ca"``, ``"fr_FR"``; the active language when None."""
    code = language if language is not None else (translation.get_language() or ENGLISH)
    return code.replace("_", "-").split("-")[0].lower() or ENGLISH


@cache
def _catalogue(language: str) -> gettext.NullTranslations:
    return gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[language], fallback=True)


def _lookup(code: str):
    normalised = (code or "").strip().upper()
    if len(normalised) not in (2, 3) or not normalised.isalpha():
        return None
    field = "alpha_2" if len(normalised) == 2 else "alpha_3"
    try:
        return pycountry.countries.get(**{field: normalised})
    except KeyError:  # older pycountry raised instead of returning None
        return None


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
    named = ((c.alpha_2, _name(c, language)) for c in pycountry.countries)
    return tuple(sorted(named, key=lambda item: (sort_key(item[1]), item[1])))


def country_choices(language: str | None = None) -> list[tuple[str, str]]:
    """``[("", "—"), (alpha_2, name)...]`` in ``language`` (the active one by default), sorted by
    the localised name. Give the function itself (not its result) to a form field's ``choices``
    so that it is called when the form is shown, in the language of that request."""
    return [("", "—"), *_choices(_language(language))]
