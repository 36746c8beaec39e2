"""Template filters for patients from abroad: money in euros and country names, in the active language."""

from __future__ import annotations

from django import template
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from protonpath.international import formatting

register = template.Library()


@register.filter
def eur(amount) -> str:
    """``12345.5`` → ``€12,345.50`` in English, ``12 345,50 €`` in French."""
    return formatting.format_eur(amount, translation.get_language() or "en")


@register.filter
def country(code) -> str:
    """ISO alpha-2 code → the country's name in the active language."""
    return formatting.country_name(code, translation.get_language() or "en")


@register.filter
def label(obj) -> str:
    """A quote or cost line's label in the active language."""
    return obj.label(formatting.short_language(translation.get_language()))


@register.filter
def unit(obj) -> str:
    return obj.unit(formatting.short_language(translation.get_language()))


REGIME_LABELS = {
    "free_movement": _("EU, EEA or Swiss citizen: free movement"),
    "visa_exempt": _("Visa-exempt (Annex II): 90 days in any 180"),
    "visa_required": _("Visa required (Annex I)"),
    "unlisted": _("In no list: to be checked by hand"),
}
REQUIREMENT_LABELS = {
    "none": _("No visa needed"),
    "short_stay_visa": _("Short-stay visa (type C)"),
    "long_stay_visa": _("Long-stay visa (type D)"),
    "manual_check": _("To be checked by the department"),
}


@register.filter
def regime(value) -> str:
    return str(REGIME_LABELS.get(str(value), value))


@register.filter
def requirement(value) -> str:
    return str(REQUIREMENT_LABELS.get(str(value), value))


@register.filter
def signatory_title(details, language) -> str:
    """The department's signatory's title in the letter's language."""
    return details.signatory_title(formatting.short_language(language))


@register.filter
def quantity_unit(line) -> str:
    """A quote line's quantity with its unit, agreeing in number: ``8 consultations``."""
    language = formatting.short_language(translation.get_language())
    return formatting.quantity_with_unit(line.quantity, line.unit(language), language)
