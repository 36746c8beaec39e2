"""Visa assessment of patients from abroad and of the people accompanying them."""

from datetime import date, timedelta

import pytest

from protonpath.international.rules.countries import UnknownCountryError
from protonpath.international.rules.loaders import load_visa_regimes
from protonpath.international.rules.stay import StayPeriod
from protonpath.international.rules.visa import (
    Regime,
    Requirement,
    Role,
    Traveller,
    application_advice,
    assess_traveller,
    assess_trip,
    classify_nationality,
)

REGIMES = load_visa_regimes()
ARRIVAL = date(2027, 3, 1)
SIX_WEEKS = StayPeriod(ARRIVAL, ARRIVAL + timedelta(days=45))
FOUR_MONTHS = StayPeriod(ARRIVAL, ARRIVAL + timedelta(days=120))


def patient(nationality, **kwargs):
    return Traveller(role=Role.PATIENT, nationality=nationality, **kwargs)


def companion(nationality, relationship="spouse", **kwargs):
    return Traveller(
        role=Role.COMPANION, nationality=nationality, relationship=relationship, **kwargs
    )


def requirement(nationality, stay=SIX_WEEKS, **kwargs):
    return assess_traveller(patient(nationality, **kwargs), stay, REGIMES).requirement


# The seed's examples ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["FR", "DE", "IT", "BE", "IE", "CY", "BG", "RO", "NO", "IS", "LI", "CH"]
)
def test_eu_eea_and_swiss_citizens_need_no_visa(code):
    assert requirement(code) is Requirement.NONE
    assert requirement(code, stay=FOUR_MONTHS) is Requirement.NONE


@pytest.mark.parametrize("code", ["US", "USA", "AE", "ARE"])
def test_united_states_and_emirates_need_no_visa_within_90_days(code):
    assert requirement(code) is Requirement.NONE


@pytest.mark.parametrize(
    "code",
    ["DZ", "SA", "CM", "CN", "CI", "EG", "GA", "KW", "LB", "MA", "NE", "RU", "SN", "TN"],
)
def test_seed_nationalities_need_a_short_stay_visa(code):
    assert requirement(code) is Requirement.SHORT_STAY_VISA


@pytest.mark.parametrize("code", ["DZ", "MA", "CN", "SN"])
def test_visa_required_nationals_need_a_long_stay_visa_beyond_90_days(code):
    assessment = assess_traveller(patient(code), FOUR_MONTHS, REGIMES)
    assert assessment.requirement is Requirement.LONG_STAY_VISA
    assert "exceeds_90_180" in [r.code for r in assessment.reasons]


@pytest.mark.parametrize("code", ["US", "AE", "JP", "BR"])
def test_visa_exempt_nationals_need_a_long_stay_visa_beyond_90_days(code):
    assert requirement(code, stay=FOUR_MONTHS) is Requirement.LONG_STAY_VISA


def test_earlier_stays_can_push_a_visa_exempt_patient_over_the_limit():
    earlier = (StayPeriod(ARRIVAL - timedelta(days=70), ARRIVAL - timedelta(days=21)),)  # 50 days
    assessment = assess_traveller(patient("US", earlier_stays=earlier), SIX_WEEKS, REGIMES)
    assert assessment.requirement is Requirement.LONG_STAY_VISA
    assert assessment.window.max_days_in_window == 96
    assert assessment.window.first_day_over_limit == ARRIVAL + timedelta(days=40)
    # Postponing the same 46-day stay would avoid the visa.
    later = assessment.earliest_visa_free_first_day
    assert later is not None and later > ARRIVAL
    shifted = StayPeriod(later, later + timedelta(days=SIX_WEEKS.days - 1))
    assert (
        assess_traveller(patient("US", earlier_stays=earlier), shifted, REGIMES).requirement
        is Requirement.NONE
    )


def test_earlier_stays_beyond_180_days_do_not_matter():
    earlier = (StayPeriod(ARRIVAL - timedelta(days=300), ARRIVAL - timedelta(days=211)),)
    assert requirement("US", earlier_stays=earlier) is Requirement.NONE


def test_earlier_stays_also_turn_a_short_stay_visa_into_a_long_stay_visa():
    earlier = (StayPeriod(ARRIVAL - timedelta(days=80), ARRIVAL - timedelta(days=11)),)  # 70 days
    assessment = assess_traveller(patient("DZ", earlier_stays=earlier), SIX_WEEKS, REGIMES)
    assert assessment.requirement is Requirement.LONG_STAY_VISA
    assert assessment.earliest_visa_free_first_day is None


# Special cases of the lists ----------------------------------------------------------------


def test_vanuatu_needs_a_visa_since_regulation_2025_11():
    assert classify_nationality("VU", REGIMES).regime is Regime.VISA_REQUIRED


def test_nauru_exemption_not_in_force_means_visa_required():
    status = classify_nationality("NR", REGIMES)
    assert status.regime is Regime.VISA_REQUIRED
    assert status.annex_entry.exemption_in_force is False
    reasons = assess_traveller(patient("NR"), SIX_WEEKS, REGIMES).reasons
    assert reasons[0].code == "annex_ii_not_in_force"


def test_kosovo_has_a_user_assigned_code_and_is_visa_exempt():
    status = classify_nationality("XK", REGIMES)
    assert status.regime is Regime.VISA_EXEMPT
    assert status.country.name == "Kosovo"
    assert classify_nationality("XKX", REGIMES).country.alpha_2 == "XK"


def test_biometric_passport_condition_is_given_as_a_reason():
    reasons = assess_traveller(patient("RS"), SIX_WEEKS, REGIMES).reasons
    assert any(r.code == "passport_condition" and "biometric" in r.message for r in reasons)


@pytest.mark.parametrize(
    "territory, state, requirement",
    [
        ("RE", "FR", Requirement.NONE),
        ("GP", "FR", Requirement.NONE),
        ("PR", "US", Requirement.NONE),
        ("GI", "GB", Requirement.NONE),
        ("AX", "FI", Requirement.NONE),
    ],
)
def test_a_territory_is_assessed_as_the_nationality_of_its_state(territory, state, requirement):
    assessment = assess_traveller(patient(territory), SIX_WEEKS, REGIMES)
    assert assessment.country.alpha_2 == state
    assert assessment.requirement is requirement
    assert assessment.reasons[0].code == "territory"


def test_a_code_in_no_list_asks_for_a_manual_check():
    assessment = assess_traveller(patient("EH"), SIX_WEEKS, REGIMES)  # Western Sahara
    assert assessment.regime is Regime.UNLISTED
    assert assessment.requirement is Requirement.MANUAL_CHECK
    assert not assessment.needs_visa


@pytest.mark.parametrize("code", ["ZZ", "XYZ", "F", "FRAN", "12", "", None])
def test_unknown_codes_are_refused_clearly(code):
    with pytest.raises(UnknownCountryError):
        assess_traveller(patient(code), SIX_WEEKS, REGIMES)


def test_most_favourable_nationality_is_assessed():
    assessment = assess_traveller(patient("DZ", other_nationalities=("FR",)), SIX_WEEKS, REGIMES)
    assert assessment.requirement is Requirement.NONE
    assert assessment.country.alpha_2 == "FR"
    assert assessment.reasons[0].code == "most_favourable_nationality"
    assert "Algeria" in assessment.reasons[0].message


# Accompanying persons and the trip -------------------------------------------------------


def test_each_companion_is_assessed_on_their_own_nationality():
    trip = assess_trip(
        patient("MA"),
        [
            companion("FR", relationship="daughter"),
            companion("MA", relationship="husband"),
            companion("US"),
        ],
        SIX_WEEKS,
        REGIMES,
    )
    assert [t.requirement for t in trip.travellers] == [
        Requirement.SHORT_STAY_VISA,
        Requirement.NONE,
        Requirement.SHORT_STAY_VISA,
        Requirement.NONE,
    ]
    assert [t.role for t in trip.travellers] == [Role.PATIENT, *[Role.COMPANION] * 3]
    assert trip.needs_any_visa
    assert trip.complete
    assert [t.needs_consulate_letter for t in trip.travellers] == [True, False, True, False]


def test_companion_needs_relationship_or_justification():
    trip = assess_trip(patient("TN"), [companion("TN", relationship=" ")], SIX_WEEKS, REGIMES)
    assert not trip.complete
    assert trip.companions[0].missing_information[0].code == "relationship_or_justification_missing"
    justified = companion(
        "TN", relationship="", justification="Close friend who cares for the patient"
    )
    assert assess_trip(patient("TN"), [justified], SIX_WEEKS, REGIMES).complete


def test_companion_earlier_stays_and_own_stay_are_their_own():
    shorter = StayPeriod(ARRIVAL + timedelta(days=10), ARRIVAL + timedelta(days=20))
    earlier = (StayPeriod(ARRIVAL - timedelta(days=89), ARRIVAL - timedelta(days=1)),)
    trip = assess_trip(
        patient("US"),
        [
            companion("US", earlier_stays=earlier, reference="c-1"),
            companion("US", stay=shorter, reference="c-2"),
        ],
        SIX_WEEKS,
        REGIMES,
    )
    assert trip.patient.requirement is Requirement.NONE
    assert trip.companions[0].reference == "c-1"
    assert trip.companions[0].requirement is Requirement.LONG_STAY_VISA
    assert trip.companions[1].stay == shorter


def test_trip_roles_are_checked():
    with pytest.raises(ValueError, match="patient role"):
        assess_trip(companion("FR"), [], SIX_WEEKS, REGIMES)
    with pytest.raises(ValueError, match="companion role"):
        assess_trip(patient("FR"), [patient("DZ")], SIX_WEEKS, REGIMES)


def test_trip_carries_the_legal_source_and_version():
    trip = assess_trip(patient("DZ"), [], SIX_WEEKS, REGIMES)
    assert "2018/1806" in trip.legal_source_title
    assert trip.regimes_version == REGIMES.version
    assert trip.consolidated_version_date == REGIMES.consolidated_version_date


# Lead times ------------------------------------------------------------------------------


def test_short_stay_application_window_and_usual_delay():
    advice = assess_traveller(patient("SN"), SIX_WEEKS, REGIMES).application
    assert advice.visa is Requirement.SHORT_STAY_VISA
    assert advice.earliest_lodging_day == date(2026, 9, 1)  # six months before
    assert advice.latest_lodging_day == date(2027, 2, 14)  # 15 days before
    assert (advice.usual_processing_days_min, advice.usual_processing_days_max) == (2, 10)
    assert "2 to 10 days" in advice.message
    assert "consulate" in advice.message
    assert not advice.late


def test_long_stay_application_has_no_deadline_but_opens_three_months_before():
    advice = assess_traveller(patient("DZ"), FOUR_MONTHS, REGIMES).application
    assert advice.visa is Requirement.LONG_STAY_VISA
    assert advice.earliest_lodging_day == date(2026, 12, 1)
    assert advice.latest_lodging_day is None
    assert advice.usual_processing_days_min is None
    assert "as early as possible" in advice.message
    assert "may take longer" in advice.message


def test_confirmed_emergency_and_late_application_are_in_the_advice():
    trip = assess_trip(
        patient("EG"), [], SIX_WEEKS, REGIMES, medical_emergency=True, today=date(2027, 2, 20)
    )
    advice = trip.patient.application
    assert advice.late
    assert "emergency" in advice.message
    assert trip.medical_emergency


def test_no_advice_when_no_visa_is_needed():
    assert assess_traveller(patient("US"), SIX_WEEKS, REGIMES).application is None
    with pytest.raises(ValueError):
        application_advice(Requirement.NONE, ARRIVAL, REGIMES.application)


def test_six_months_before_the_end_of_a_month_is_clamped():
    advice = application_advice(Requirement.SHORT_STAY_VISA, date(2027, 8, 31), REGIMES.application)
    assert advice.earliest_lodging_day == date(2027, 2, 28)


def test_free_movement_beyond_three_months_mentions_residence_conditions():
    reasons = assess_traveller(patient("PT"), FOUR_MONTHS, REGIMES).reasons
    assert [r.code for r in reasons] == ["free_movement", "free_movement_over_3_months"]


def test_roles_may_be_given_as_strings():
    assert Traveller(role="companion", nationality="FR", relationship="son").role is Role.COMPANION
    with pytest.raises(ValueError):
        Traveller(role="visitor", nationality="FR")
