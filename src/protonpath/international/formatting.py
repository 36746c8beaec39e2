"""Money and country names as people read them, in English and French."""

from __future__ import annotations

import gettext
from decimal import Decimal, InvalidOperation
from functools import cache

import pycountry

from protonpath.international.rules.countries import UnknownCountryError, resolve_country

NBSP = "\u00a0"


def short_language(language: str | None) -> str:
    return "fr" if (language or "").lower().startswith("fr") else "en"


def format_eur(amount, language: str) -> str:
    """Euros to the cent: ``€12,345.00`` (English) or ``12 345,00 €`` (French, non-breaking spaces)."""
    if amount in (None, ""):
        return ""
    try:
        value = Decimal(str(amount)).quantize(Decimal("0.01"))
    except InvalidOperation:
        return str(amount)
    sign = "-" if value < 0 else ""
    whole, cents = f"{abs(value):.2f}".split(".")
    grouped = f"{int(whole):,}"
    if short_language(language) == "fr":
        return f"{sign}{grouped.replace(',', NBSP)},{cents}{NBSP}€"
    return f"{sign}€{grouped}.{cents}"


@cache
def _french_countries() -> gettext.NullTranslations:
    return gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["fr"], fallback=True)


def country_name(code: str, language: str) -> str:
    """The name of a nationality's country (pycountry's names and their French translation)."""
    try:
        country = resolve_country(code or "")
    except UnknownCountryError:
        return code or ""
    if short_language(language) == "fr":
        found = pycountry.countries.get(alpha_2=country.alpha_2)
        name = found.name if found is not None else country.name
        return _french_countries().gettext(name)
    return country.name
