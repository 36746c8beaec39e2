"""The data files: versioned, sourced, consistent, and refused when broken."""

import copy
from datetime import date

import pycountry
import pytest

from protonpath.international.rules.loaders import (
    DAILY_COSTS_FILE,
    TARIFF_FILE,
    VISA_REGIMES_FILE,
    load_daily_costs,
    load_tariff,
    load_visa_regimes,
    read_data_file,
)
from protonpath.international.rules.quote import daily_costs_from_dict, tariff_from_dict
from protonpath.international.rules.visa import visa_regimes_from_dict


def test_visa_lists_name_their_legal_source_and_dates():
    regimes = load_visa_regimes()
    assert "Regulation (EU) 2018/1806" in regimes.legal_source_title
    assert "eur-lex.europa.eu" in regimes.legal_source_url
    assert regimes.consolidated_version_date <= regimes.reviewed_on
    assert (regimes.limit_days, regimes.window_days) == (90, 180)
    assert "2016/399" in regimes.rule_source


def test_membership_lists():
    regimes = load_visa_regimes()
    assert len(regimes.eu) == 27
    assert regimes.eea_efta == {"IS", "LI", "NO"}
    assert regimes.switzerland == {"CH"}
    # Ireland and Cyprus are in the EU but outside Schengen; Bulgaria and Romania joined it.
    assert {"IE", "CY"} <= regimes.eu and not {"IE", "CY"} & regimes.schengen
    assert {"BG", "RO", "CH", "NO", "IS", "LI"} <= regimes.schengen
    assert len(regimes.schengen) == 29


def test_annexes_do_not_overlap_and_use_known_codes():
    regimes = load_visa_regimes()
    assert not set(regimes.annex_i) & set(regimes.annex_ii)
    assert not regimes.free_movement & (set(regimes.annex_i) | set(regimes.annex_ii))
    extra = {c.alpha_2 for c in regimes.extra_countries}
    for code in [*regimes.annex_i, *regimes.annex_ii]:
        assert code in extra or pycountry.countries.get(alpha_2=code) is not None


def test_annex_sizes_match_the_regulation_after_its_amendments():
    regimes = load_visa_regimes()
    # Annex I: 102 states in 2018 + Vanuatu (2025/11), Kosovo moved out (2023/850); plus the
    # Palestinian Authority as an entity.
    states_i = [e for e in regimes.annex_i.values() if e.part == "1"]
    assert len(states_i) == 103
    assert "XK" not in regimes.annex_i and "VU" in regimes.annex_i and "PS" in regimes.annex_i
    # Annex II, Part 1: 60 states incl. the United Kingdom; then Hong Kong, Macao, Taiwan, Kosovo.
    states_ii = [e for e in regimes.annex_ii.values() if e.part == "1"]
    assert len(states_ii) == 60
    assert {"HK", "MO", "TW", "XK", "GB"} <= set(regimes.annex_ii)


def test_every_un_member_state_and_the_holy_see_is_listed_once():
    regimes = load_visa_regimes()
    states = (
        len(regimes.free_movement)
        + sum(e.part == "1" for e in regimes.annex_i.values())
        + sum(e.part == "1" for e in regimes.annex_ii.values())
    )
    assert states == 193 + 1


def test_every_iso_code_is_listed_or_a_mapped_territory_except_a_few():
    regimes = load_visa_regimes()
    covered = (
        regimes.free_movement
        | set(regimes.annex_i)
        | set(regimes.annex_ii)
        | set(regimes.territory_states)
    )
    uncovered = {c.alpha_2 for c in pycountry.countries} - covered
    assert uncovered == {"AQ", "EH"}


def test_territories_must_map_to_a_listed_state():
    raw = copy.deepcopy(read_data_file(VISA_REGIMES_FILE))
    raw["territories"]["states"]["EH"] = "EH"
    with pytest.raises(ValueError, match="Territory EH"):
        visa_regimes_from_dict(raw)


@pytest.mark.parametrize(
    "section, mutate, message",
    [
        ("annex_i", lambda d: d["annex_i"].append({"code": "US", "name": "USA"}), "both in"),
        ("annex_ii", lambda d: d["annex_ii"].append({"code": "FR", "name": "France"}), "both in"),
        ("annex_i", lambda d: d["annex_i"].append({"code": "DZ", "name": "Algeria"}), "twice"),
        ("annex_i", lambda d: d["annex_i"].append({"code": "QQ", "name": "Nowhere"}), "QQ"),
    ],
)
def test_broken_visa_data_is_refused(section, mutate, message):
    raw = copy.deepcopy(read_data_file(VISA_REGIMES_FILE))
    mutate(raw)
    with pytest.raises(ValueError, match=message):
        visa_regimes_from_dict(raw)


def test_default_tariff_is_versioned_and_marked_illustrative():
    tariff = load_tariff()
    assert tariff.illustrative
    assert "ILLUSTRATIVE" in tariff.notice
    assert tariff.effective_from == date(2026, 1, 1)
    assert tariff.version
    assert all(item.label_en and item.label_fr for item in tariff.items.values())


def test_tariff_prices_must_be_strings_in_euros():
    raw = copy.deepcopy(read_data_file(TARIFF_FILE))
    raw["items"][0]["unit_price_eur"] = 120.1
    with pytest.raises(ValueError, match="strings"):
        tariff_from_dict(raw)
    raw = copy.deepcopy(read_data_file(TARIFF_FILE))
    raw["currency"] = "USD"
    with pytest.raises(ValueError, match="EUR"):
        tariff_from_dict(raw)


def test_tariff_must_price_the_required_items():
    raw = copy.deepcopy(read_data_file(TARIFF_FILE))
    raw["items"] = [i for i in raw["items"] if i["code"] != "proton_fraction"]
    with pytest.raises(ValueError, match="proton_fraction"):
        tariff_from_dict(raw)


def test_tariff_refuses_negative_and_repeated_items():
    raw = copy.deepcopy(read_data_file(TARIFF_FILE))
    raw["items"][0]["unit_price_eur"] = "-1.00"
    with pytest.raises(ValueError, match="negative"):
        tariff_from_dict(raw)
    raw = copy.deepcopy(read_data_file(TARIFF_FILE))
    raw["items"].append(dict(raw["items"][0]))
    with pytest.raises(ValueError, match="twice"):
        tariff_from_dict(raw)


def test_daily_costs_are_illustrative_and_parsed_as_decimals():
    costs = load_daily_costs()
    assert costs.illustrative and costs.city == "Caen"
    assert str(costs.meals_per_person_per_day_eur) == "30.00"
    raw = copy.deepcopy(read_data_file(DAILY_COSTS_FILE))
    raw["meals_per_person_per_day_eur"] = 30
    with pytest.raises(ValueError, match="strings"):
        daily_costs_from_dict(raw)
