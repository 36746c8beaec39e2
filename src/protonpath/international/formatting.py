"""Money and country names as people read them, in English and French."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from protonpath.referrals import countries

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


def country_name(code: str, language: str) -> str:
    """The name of a nationality's country in English or French (the shared helper of
    :mod:`protonpath.referrals.countries`); the code itself when unknown."""
    return countries.country_name(code, short_language(language))


def plural_unit(unit: str, quantity, language: str) -> str:
    """The tariff's unit (a singular noun of the data: "consultation", "examen") agreeing with
    ``quantity``: French plural from 2 on (0 and 1 singular), English for all but 1. The units
    are regular nouns: an ``s`` is added unless the word already ends in s, x or z."""
    try:
        number = abs(float(quantity))
    except (TypeError, ValueError):
        return unit
    plural = number >= 2 if language == "fr" else number != 1
    if not plural or not unit or unit[-1] in "sxzSXZ":
        return unit
    return unit + "s"


def quantity_with_unit(quantity, unit: str, language: str) -> str:
    """``8 consultations``, ``1 fraction``, ``30 fractions`` (numbers as in the language)."""
    from django.utils.formats import number_format

    return f"{number_format(quantity)} {plural_unit(unit, quantity, language)}"
