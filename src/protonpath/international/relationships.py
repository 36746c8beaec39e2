"""An accompanying person's relationship to the patient: a choice, named in the reader's language.

The relationship was free text, printed on the consulate letters as typed ("mère" on an
English letter, "husband" on a French one). It is now one of :class:`Relationship`, translated
when shown; "other" keeps a few words of free text. :func:`relationship_of` reads the common
English and French words (used for rows typed before, and for callers that still send text).
"""

from __future__ import annotations

import unicodedata

from django.db import models
from django.utils.translation import gettext_lazy as _


class Relationship(models.TextChoices):
    PARENT = "parent", _("Parent")
    SPOUSE = "spouse", _("Spouse or partner")
    CHILD = "child", _("Son or daughter")
    SIBLING = "sibling", _("Brother or sister")
    LEGAL_GUARDIAN = "legal_guardian", _("Legal guardian")
    OTHER = "other", _("Other (say which)")


#: Words people type, without case or accents, for each relationship.
WORDS: dict[str, frozenset[str]] = {
    Relationship.PARENT: frozenset(
        {"parent", "parents", "mother", "father", "mum", "mom", "mummy", "dad", "daddy",
         "mere", "pere", "maman", "papa", "mother of the patient", "father of the patient"}
    ),
    Relationship.SPOUSE: frozenset(
        {"spouse", "husband", "wife", "partner", "epoux", "epouse", "mari", "femme", "conjoint",
         "conjointe", "compagnon", "compagne", "concubin", "concubine"}
    ),
    Relationship.CHILD: frozenset({"child", "son", "daughter", "enfant", "fils", "fille"}),
    Relationship.SIBLING: frozenset(
        {"sibling", "brother", "sister", "frere", "soeur", "brother or sister", "frere ou soeur"}
    ),
    Relationship.LEGAL_GUARDIAN: frozenset(
        {"guardian", "legal guardian", "legal representative", "tutor", "tuteur", "tutrice",
         "tuteur legal", "tutrice legale", "representant legal", "representante legale"}
    ),
}

_ARTICLES = ("the ", "his ", "her ", "their ", "la ", "le ", "l'", "sa ", "son ", "ma ", "mon ")


def _plain(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.replace("œ", "oe").replace("Œ", "oe"))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold().strip(" .,;:")
    text = " ".join(text.replace("’", "'").split())
    for article in _ARTICLES:
        if text.startswith(article) and len(text) > len(article):
            text = text[len(article):].strip()
            break
    return text


def relationship_of(text: str) -> tuple[str, str]:
    """``(kind, free text)`` for what someone typed: a known word gives its kind and no text;
    anything else is "other" with the text as typed; nothing gives ``("", "")``."""
    text = (text or "").strip()
    if not text:
        return "", ""
    plain = _plain(text)
    for kind, words in WORDS.items():
        if plain in words:
            return str(kind), ""
    return str(Relationship.OTHER), text
