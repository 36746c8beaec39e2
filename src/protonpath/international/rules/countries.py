"""Country codes for nationalities, validated with pycountry.

A few entities the European Union lists have no ISO 3166-1 code (Kosovo, ``XK``); the visa data
file declares them, and :func:`resolve_country` takes them as ``extra`` countries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pycountry


class UnknownCountryError(ValueError):
    """Raised for a code that is neither an ISO 3166-1 alpha-2/alpha-3 code nor a declared extra."""


@dataclass(frozen=True)
class Country:
    """A country or territory, as used for a nationality.

    Attributes
    ----------
    alpha_2 : str
        ISO 3166-1 alpha-2 code (or the user-assigned code of an extra entity, e.g. ``XK``).
    alpha_3 : str
        ISO 3166-1 alpha-3 code (or user-assigned, e.g. ``XKX``).
    name : str
        English short name (pycountry's common name where it has one).
    """

    alpha_2: str
    alpha_3: str
    name: str


def resolve_country(code: str, extra: Iterable[Country] = ()) -> Country:
    """Return the country for an alpha-2 or alpha-3 code, in any case.

    Parameters
    ----------
    code : str
        ``"DZ"``, ``"dza"``, ``" us "``...
    extra : iterable of Country
        Entities without an ISO code that the caller accepts (from the visa data file).

    Raises
    ------
    UnknownCountryError
        If the code has the wrong shape or names no known country.
    """
    if not isinstance(code, str):
        raise UnknownCountryError(f"Country code must be a string, got {type(code).__name__}.")
    normalised = code.strip().upper()
    if len(normalised) not in (2, 3) or not normalised.isalpha():
        raise UnknownCountryError(
            f"{code!r} is not a country code: use ISO 3166-1 alpha-2 (e.g. 'DZ') or alpha-3 (e.g. 'DZA')."
        )
    for country in extra:
        if normalised in (country.alpha_2, country.alpha_3):
            return country
    field = "alpha_2" if len(normalised) == 2 else "alpha_3"
    try:
        found = pycountry.countries.get(**{field: normalised})
    except KeyError:  # older pycountry raised instead of returning None
        found = None
    if found is None:
        raise UnknownCountryError(
            f"{code!r} is not an ISO 3166-1 {field.replace('_', '-')} country code."
        )
    name = getattr(found, "common_name", None) or found.name
    return Country(alpha_2=found.alpha_2, alpha_3=found.alpha_3, name=name)
