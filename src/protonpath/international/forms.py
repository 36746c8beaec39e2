"""Forms for quotes, payments, accompanying persons, earlier stays and tariffs."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.utils.translation import gettext_lazy as _

from protonpath.international.models import (
    AccompanyingPerson,
    DepartmentDetails,
    PaymentKind,
    PaymentMethod,
    Tariff,
)
from protonpath.international.relationships import Relationship
from protonpath.referrals.countries import CountryField


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%d", **kwargs)


class QuoteBuildForm(forms.Form):
    consultations = forms.IntegerField(label=_("Consultations"), min_value=0, max_value=60)
    anaesthesia = forms.BooleanField(label=_("General anaesthesia (child)"), required=False)
    first_consultation_on = forms.DateField(label=_("Planned first consultation"), widget=DateInput())
    companions = forms.IntegerField(label=_("Accompanying persons"), min_value=0, max_value=10)
    return_journey_per_person_eur = forms.DecimalField(
        label=_("Return journey per person (EUR), if known"), required=False, min_value=Decimal("0"), decimal_places=2, max_digits=10
    )

    def __init__(self, *args, imaging_codes=(), imaging_labels=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.imaging_codes = tuple(imaging_codes)
        for code in self.imaging_codes:
            self.fields[code] = forms.IntegerField(
                label=(imaging_labels or {}).get(code, code), min_value=0, max_value=20, initial=0
            )

    def imaging(self) -> dict[str, int]:
        return {code: self.cleaned_data.get(code) or 0 for code in self.imaging_codes}


class RefuseForm(forms.Form):
    reason = forms.CharField(label=_("Why do you refuse the quote?"), widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)


class PaymentForm(forms.Form):
    kind = forms.ChoiceField(label=_("Kind"), choices=PaymentKind.choices, initial=PaymentKind.PAYMENT)
    amount_eur = forms.DecimalField(label=_("Amount (EUR)"), min_value=Decimal("0.01"), decimal_places=2, max_digits=12)
    paid_on = forms.DateField(label=_("Date"), widget=DateInput())
    method = forms.ChoiceField(label=_("Method"), choices=PaymentMethod.choices)
    reference = forms.CharField(label=_("Reference"), max_length=100)
    note = forms.CharField(label=_("Note"), max_length=300, required=False)


class CompanionForm(forms.ModelForm):
    # A choice of countries in the reader's language (typing "Algeria" saved "AL", Albania).
    nationality = CountryField(label=_("Nationality"))

    class Meta:
        model = AccompanyingPerson
        fields = [
            "first_name", "last_name", "birth_date", "nationality", "passport_number",
            "relationship_kind", "relationship", "legal_guardian", "justification",
        ]
        widgets = {"birth_date": DateInput(), "justification": forms.Textarea(attrs={"rows": 2})}

    def clean(self):
        data = super().clean()
        if data.get("relationship_kind") and data["relationship_kind"] != Relationship.OTHER:
            data["relationship"] = ""  # words are for "other" only
        return data


class PatientPassportForm(forms.Form):
    passport_number = forms.CharField(label=_("The patient's passport number"), max_length=40, required=False)


class DeclaredStayForm(forms.Form):
    traveller = forms.ChoiceField(label=_("Who"))
    entry_on = forms.DateField(label=_("Entry into the Schengen area"), widget=DateInput())
    exit_on = forms.DateField(label=_("Exit"), widget=DateInput())

    def __init__(self, *args, companions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["traveller"].choices = [("", _("The patient"))] + [(str(c.pk), c.full_name) for c in companions]
        self.fields["traveller"].required = False

    def clean(self):
        data = super().clean()
        if data.get("entry_on") and data.get("exit_on") and data["exit_on"] < data["entry_on"]:
            raise forms.ValidationError(_("The exit cannot be before the entry."))
        return data


class TravelPlanForm(forms.Form):
    first_consultation_on = forms.DateField(label=_("Planned first consultation"), widget=DateInput())
    medical_emergency = forms.BooleanField(label=_("Medical emergency confirmed"), required=False)


class TariffForm(forms.ModelForm):
    class Meta:
        model = Tariff
        fields = ["code", "label_en", "label_fr", "unit_en", "unit_fr", "unit_price_eur", "valid_from", "source"]
        widgets = {"valid_from": DateInput()}


class DepartmentDetailsForm(forms.ModelForm):
    class Meta:
        model = DepartmentDetails
        fields = [
            "address", "phone", "email", "signatory_name", "signatory_title_en", "signatory_title_fr",
            "beneficiary", "iban", "bic", "bank_name", "payment_note_en", "payment_note_fr",
        ]
        widgets = {
            "address": forms.Textarea(attrs={"rows": 3}),
            "payment_note_en": forms.Textarea(attrs={"rows": 3}),
            "payment_note_fr": forms.Textarea(attrs={"rows": 3}),
        }
