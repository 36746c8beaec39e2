from __future__ import annotations

import datetime

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from protonpath.referrals.countries import CountryField, country_choices
from protonpath.referrals.models import GUARDIAN_FIELDS, DocumentKind, Patient, TreatmentRequest
from protonpath.referrals.services import PATIENT_FIELDS, REQUEST_FIELDS


class PatientForm(forms.ModelForm):
    # The function, not its result: the choices are computed when the form is shown, in the
    # language of that request.
    nationality = CountryField(label=_("Nationality"), choices=country_choices)
    country_of_residence = CountryField(label=_("Country of residence"), choices=country_choices)

    class Meta:
        model = Patient
        fields = PATIENT_FIELDS
        widgets = {
            "birth_date": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
            "address": forms.Textarea(attrs={"rows": 3}),
        }

    def clean_birth_date(self):
        birth_date = self.cleaned_data["birth_date"]
        today = timezone.localdate()
        if birth_date > today:
            raise forms.ValidationError(_("The date of birth is in the future."))
        if birth_date < today - datetime.timedelta(days=125 * 366):
            raise forms.ValidationError(_("Please check the date of birth."))
        return birth_date


class TreatmentRequestForm(forms.ModelForm):
    addressee_country = CountryField(label=_("Addressee's country"), required=False)

    def __init__(self, *args, guardian_part: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        #: Whether the form asks who fills it in for the patient (a patient account only: a
        #: doctor or staff member is not the patient's parent).
        self.guardian_part = guardian_part
        if not guardian_part:
            for name in ("filled_by_guardian", *GUARDIAN_FIELDS):
                del self.fields[name]

    class Meta:
        model = TreatmentRequest
        fields = REQUEST_FIELDS
        widgets = {
            "reason": forms.Textarea(attrs={"rows": 3}),
            "addressee_address": forms.Textarea(attrs={"rows": 3}),
        }
        labels = {
            "filled_by_guardian": _("I am the patient's parent or legal guardian and fill in this request for them"),
            "guardian_name": _("Your name (parent or legal guardian)"),
            "guardian_relationship": _("Your relationship to the patient"),
            "guardian_phone": _("Your telephone"),
            "guardian_email": _("Your e-mail"),
        }


#: The kinds a document may be added as: DICOM images go through the imaging upload only.
UPLOAD_KINDS = [(value, label) for value, label in DocumentKind.choices if value != DocumentKind.DICOM_IMAGES]


class DocumentForm(forms.Form):
    kind = forms.ChoiceField(label=_("Kind of document"), choices=UPLOAD_KINDS)
    file = forms.FileField(label=_("File"))
    description = forms.CharField(label=_("Description"), max_length=300, required=False)


class NoteForm(forms.Form):
    note = forms.CharField(label=_("Reason / message"), widget=forms.Textarea(attrs={"rows": 3}), required=False)


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(
        label=_("Decision"),
        choices=[
            ("accept", _("Accept: proton therapy indicated")),
            ("decline", _("Decline")),
            ("request_information", _("Ask for more information")),
        ],
        widget=forms.RadioSelect,
    )
    dose_gy = forms.DecimalField(label=_("Proposed dose (Gy RBE)"), max_digits=5, decimal_places=2, required=False)
    fractions = forms.IntegerField(label=_("Number of fractions"), min_value=1, max_value=60, required=False)
    note = forms.CharField(label=_("Note"), widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def clean(self):
        data = super().clean()
        if data.get("decision") == "accept" and (data.get("dose_gy") is None or data.get("fractions") is None):
            raise forms.ValidationError(_("An accepted request needs the proposed dose and number of fractions."))
        if data.get("decision") in ("decline", "request_information") and not (data.get("note") or "").strip():
            raise forms.ValidationError(_("Please give a reason."))
        return data


class ReusePatientForm(forms.Form):
    """Offered when a new request names a patient the author already referred."""

    NEW = "new"
    choice = forms.ChoiceField(label=_("Is this one of your patients?"), widget=forms.RadioSelect)

    def __init__(self, *args, candidates: list[tuple[int, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["choice"].choices = [(str(pk), label) for pk, label in candidates] + [
            (self.NEW, _("No, another person: create a new patient record"))
        ]

    def reuse_pk(self) -> int | None:
        value = self.cleaned_data["choice"]
        return None if value == self.NEW else int(value)


class MergeForm(forms.Form):
    confirm = forms.BooleanField(
        label=_("I have checked that both records are the same person."), required=True
    )
