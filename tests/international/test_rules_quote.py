"""Quotes from a versioned tariff, and the estimate of the additional costs of the stay."""

import copy
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protonpath.international.rules.loaders import (
    TARIFF_FILE,
    load_daily_costs,
    load_tariff,
    read_data_file,
)
from protonpath.international.rules.quote import (
    MissingTariffItemError,
    TreatmentParameters,
    build_quote,
    estimate_additional_costs,
    money_eur,
    tariff_from_dict,
    tariff_in_force,
)
from protonpath.international.rules.stay import StayPeriod

TARIFF = load_tariff()
COSTS = load_daily_costs()


def price(code):
    return TARIFF.items[code].unit_price_eur


def test_adult_quote_lines_and_total():
    quote = build_quote(
        TreatmentParameters(fractions=30, consultations=7, imaging={"imaging_ct_planning": 1}),
        TARIFF,
    )
    assert [(line.code, line.quantity) for line in quote.lines] == [
        ("consultation_oncologist", 7),
        ("imaging_ct_planning", 1),
        ("treatment_planning", 1),
        ("proton_fraction", 30),
    ]
    expected = (
        7 * price("consultation_oncologist")
        + price("imaging_ct_planning")
        + price("treatment_planning")
        + 30 * price("proton_fraction")
    )
    assert quote.total_eur == expected
    assert quote.tariff_version == TARIFF.version
    assert quote.illustrative
    assert quote.currency == "EUR"


def test_child_under_anaesthesia_gets_one_per_session_and_exam():
    params = TreatmentParameters(
        fractions=28,
        consultations=6,
        imaging={"imaging_ct_planning": 1, "imaging_mri": 2},
        anaesthesia=True,
    )
    lines = {line.code: line for line in build_quote(params, TARIFF).lines}
    assert lines["anaesthesia_consultation"].quantity == 1
    assert lines["anaesthesia_session"].quantity == 28 + 3
    assert lines["anaesthesia_session"].total_eur == 31 * price("anaesthesia_session")
    assert lines["anaesthesia_session"].label_fr.startswith("Anesthésie")


def test_without_anaesthesia_there_is_no_anaesthesia_line():
    quote = build_quote(TreatmentParameters(fractions=5, consultations=0), TARIFF)
    assert not any(line.code.startswith("anaesthesia") for line in quote.lines)
    assert "consultation_oncologist" not in [line.code for line in quote.lines]


def test_a_sent_quote_keeps_its_prices_when_the_tariff_changes():
    params = TreatmentParameters(fractions=10, consultations=3)
    sent = build_quote(params, TARIFF)
    raw = copy.deepcopy(read_data_file(TARIFF_FILE))
    raw["version"] = "illustrative-2027.1"
    raw["effective_from"] = "2027-01-01"
    for item in raw["items"]:
        item["unit_price_eur"] = str(Decimal(item["unit_price_eur"]) * 2)
    newer = tariff_from_dict(raw)
    assert build_quote(params, newer).total_eur == 2 * sent.total_eur
    assert sent.total_eur == build_quote(params, TARIFF).total_eur
    assert sent.tariff_version == "illustrative-2026.1"
    # The tariff in force depends on the day the quote is built.
    assert tariff_in_force([TARIFF, newer], date(2026, 12, 31)) is TARIFF
    assert tariff_in_force([TARIFF, newer], date(2027, 1, 1)) is newer
    with pytest.raises(LookupError):
        tariff_in_force([TARIFF, newer], date(2025, 6, 1))


def test_unknown_imaging_is_refused():
    with pytest.raises(MissingTariffItemError, match="imaging_xray"):
        build_quote(
            TreatmentParameters(fractions=5, consultations=1, imaging={"imaging_xray": 1}), TARIFF
        )
    with pytest.raises(MissingTariffItemError, match="has no item"):
        build_quote(TreatmentParameters(fractions=5, consultations=1), replace(TARIFF, items={}))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fractions": 0, "consultations": 1},
        {"fractions": 2.5, "consultations": 1},
        {"fractions": True, "consultations": 1},
        {"fractions": 5, "consultations": -1},
        {"fractions": 5, "consultations": 1, "imaging": {"mri": 1}},
        {"fractions": 5, "consultations": 1, "imaging": {"imaging_mri": -1}},
    ],
)
def test_invalid_treatment_parameters(kwargs):
    with pytest.raises(ValueError):
        TreatmentParameters(**kwargs)


@given(
    st.integers(1, 60),
    st.integers(0, 20),
    st.integers(0, 3),
    st.integers(0, 3),
    st.booleans(),
)
def test_total_is_the_sum_of_exact_line_totals(fractions, consultations, ct, mri, anaesthesia):
    params = TreatmentParameters(
        fractions, consultations, {"imaging_ct_planning": ct, "imaging_mri": mri}, anaesthesia
    )
    quote = build_quote(params, TARIFF)
    assert all(line.quantity > 0 for line in quote.lines)
    assert all(line.total_eur == line.unit_price_eur * line.quantity for line in quote.lines)
    assert quote.total_eur == sum(line.total_eur for line in quote.lines)
    assert quote.total_eur.as_tuple().exponent == -2


def test_money_rounds_half_up_to_the_cent_and_refuses_floats():
    assert money_eur("10.005") == Decimal("10.01")
    assert money_eur(3) == Decimal("3.00")
    with pytest.raises(TypeError):
        money_eur(0.1)
    with pytest.raises(ValueError):
        money_eur("ten")
    with pytest.raises(ValueError):
        money_eur("NaN")


# Additional costs -------------------------------------------------------------------------

STAY = StayPeriod(date(2027, 1, 3), date(2027, 2, 27))  # 56 days, 55 nights


def test_costs_for_patient_alone():
    estimate = estimate_additional_costs(STAY, 0, COSTS)
    lines = {line.code: line for line in estimate.lines}
    assert set(lines) == {"accommodation_first_person", "meals", "local_transport"}
    assert (
        lines["accommodation_first_person"].total_eur
        == 55 * COSTS.accommodation_first_person_per_night_eur
    )
    assert lines["meals"].total_eur == 56 * COSTS.meals_per_person_per_day_eur
    assert estimate.total_eur == sum(line.total_eur for line in estimate.lines)
    assert (estimate.persons, estimate.nights, estimate.days) == (1, 55, 56)
    assert not estimate.travel_included


def test_costs_for_patient_and_two_companions_with_journeys():
    estimate = estimate_additional_costs(
        STAY, 2, COSTS, return_journey_per_person_eur=Decimal("450")
    )
    lines = {line.code: line for line in estimate.lines}
    assert lines["accommodation_additional_persons"].persons == 2
    assert lines["accommodation_additional_persons"].total_eur == (
        2 * 55 * COSTS.accommodation_additional_person_per_night_eur
    )
    assert lines["meals"].total_eur == 3 * 56 * COSTS.meals_per_person_per_day_eur
    assert (
        lines["local_transport"].total_eur == 3 * 56 * COSTS.local_transport_per_person_per_day_eur
    )
    assert lines["return_journey"].total_eur == Decimal("1350.00")
    assert estimate.travel_included
    alone = estimate_additional_costs(STAY, 0, COSTS, return_journey_per_person_eur=Decimal("450"))
    assert estimate.total_eur > alone.total_eur


def test_invalid_cost_inputs():
    with pytest.raises(ValueError):
        estimate_additional_costs(STAY, -1, COSTS)
    with pytest.raises(ValueError):
        estimate_additional_costs(STAY, 0, COSTS, return_journey_per_person_eur=Decimal("-5"))
    with pytest.raises(TypeError):
        estimate_additional_costs(STAY, 0, COSTS, return_journey_per_person_eur=450.0)
