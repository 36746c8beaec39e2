"""Typography of the active language in templates (a builtin tag library: no ``{% load %}``).

``{% translate "CT" %}{% colon %}`` renders ``CT:`` in English and ``Scanner :`` (a no-break
space before the colon) in French: a label's colon written after its translation in a template
would otherwise be English typography in every language.
"""

from __future__ import annotations

from django import template
from django.utils import translation

register = template.Library()

#: The no-break space French print puts before a high punctuation mark (: ; ! ?).
NO_BREAK_SPACE = "\u00a0"


def colon_for(language: str | None) -> str:
    """The label colon of ``language`` (a language code such as ``fr`` or ``en-gb``)."""
    return NO_BREAK_SPACE + ":" if (language or "").lower().startswith("fr") else ":"


@register.simple_tag
def colon() -> str:
    """The label colon of the active language."""
    return colon_for(translation.get_language())
