"""Nationality codes resolved with pycountry."""

import pytest

from protonpath.international.rules.countries import Country, UnknownCountryError, resolve_country


@pytest.mark.parametrize("code", ["DZ", "dz", " DZA ", "dza"])
def test_alpha_2_and_alpha_3_in_any_case(code):
    assert resolve_country(code) == Country("DZ", "DZA", "Algeria")


def test_common_name_is_preferred():
    assert resolve_country("TW").name == "Taiwan"
    assert resolve_country("BO").name == "Bolivia"


def test_extra_entities_are_accepted_only_when_given():
    kosovo = Country("XK", "XKX", "Kosovo")
    assert resolve_country("xk", [kosovo]) is kosovo
    with pytest.raises(UnknownCountryError, match="alpha-2"):
        resolve_country("XK")


@pytest.mark.parametrize(
    "code, message",
    [
        ("ZZ", "alpha-2"),
        ("ZZZ", "alpha-3"),
        ("F1", "not a country code"),
        ("", "not a country code"),
        ("FRANCE", "not a country code"),
    ],
)
def test_unknown_codes_give_clear_errors(code, message):
    with pytest.raises(UnknownCountryError, match=message):
        resolve_country(code)


def test_non_strings_are_refused():
    with pytest.raises(UnknownCountryError, match="string"):
        resolve_country(250)
