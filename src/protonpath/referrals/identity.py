"""How two patient records are compared: family name, given name and birth date, normalised.

Case, accents, punctuation and spacing do not count ("Élodie  D'ANGELO" = "elodie d angelo"), so a
second record for the same person is found whatever keyboard typed it. Pure: no Django.
"""

from __future__ import annotations

import datetime
import re
import unicodedata

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
# Letters that NFKD does not split into a base letter and an accent.
_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"})


def normalise_name(value: str) -> str:
    """Lower case, without accents, punctuation or repeated spaces."""
    text = unicodedata.normalize("NFKD", value or "").casefold().translate(_FOLD)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return _NOT_ALNUM.sub(" ", text).strip()


def identity_key(last_name: str, first_name: str, birth_date: datetime.date | str | None) -> str:
    """The key under which records of the same person meet (family name|given name|birth date)."""
    if isinstance(birth_date, datetime.date):
        birth = birth_date.isoformat()
    else:
        birth = str(birth_date or "")
    return f"{normalise_name(last_name)}|{normalise_name(first_name)}|{birth}"
