"""Model rules: used tariff prices and sent quotes never change; travellers are validated."""

import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from protonpath.international.models import (
    AccompanyingPerson,
    DeclaredStay,
    Tariff,
    validate_nationality,
)

pytestmark = pytest.mark.django_db


def test_an_unused_price_may_be_corrected_but_a_used_one_never(sent_quote):
    unused = Tariff.objects.get(code="imaging_pet_ct")  # the default quote has no PET-CT
    unused.unit_price_eur = Decimal("1000.00")
    unused.save()
    used = Tariff.objects.get(code="treatment_planning")
    used.label_en = "Something else"
    with pytest.raises(ValidationError):
        used.save()
    with pytest.raises(ValidationError):
        used.delete()
    assert Tariff.objects.get(pk=used.pk).label_en.startswith("Treatment planning")


@pytest.mark.parametrize("related", ["lines", "cost_lines"])
def test_lines_of_a_sent_quote_can_be_neither_changed_nor_deleted(sent_quote, related):
    line = getattr(sent_quote, related).first()
    line.total_eur = Decimal("1.00")
    with pytest.raises(ValidationError):
        line.save()
    with pytest.raises(ValidationError):
        line.delete()
    assert getattr(sent_quote, related).filter(pk=line.pk).exists()


def test_a_draft_quote_line_may_be_rebuilt(accepted, staff):
    from protonpath.international import services

    quote = services.build_quote(actor=staff, treatment_request=accepted)
    line = quote.lines.first()
    line.quantity += 1
    line.save()
    assert quote.lines.get(pk=line.pk).quantity == line.quantity


@pytest.mark.parametrize("code", ["DZ", "MA", "US", "XK", "CN"])
def test_valid_nationalities(code):
    validate_nationality(code)


@pytest.mark.parametrize("code", ["ZZ", "", "dz", "DZA", "1A"])
def test_invalid_nationalities(code):
    with pytest.raises(ValidationError):
        validate_nationality(code)


def test_an_accompanying_person_needs_a_relationship_or_a_justification(accepted):
    person = AccompanyingPerson(treatment_request=accepted, first_name="A", last_name="B", nationality="MA")
    with pytest.raises(ValidationError):
        person.full_clean()
    person.justification = "Drives the patient to each session."
    person.full_clean()


def test_a_declared_stay_ends_after_it_starts(accepted):
    stay = DeclaredStay(treatment_request=accepted, entry_on=datetime.date(2026, 3, 10), exit_on=datetime.date(2026, 3, 1))
    with pytest.raises(ValidationError):
        stay.full_clean()


def test_the_quote_knows_its_stay(sent_quote):
    assert sent_quote.stay_days == sent_quote.stay_nights + 1
    assert sent_quote.stay_first_day < sent_quote.first_consultation_on < sent_quote.first_fraction_on <= sent_quote.last_fraction_on < sent_quote.stay_last_day
