from __future__ import annotations

from datetime import datetime

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from protonpath.scheduling import selectors
from protonpath.scheduling.models import ConsultationKind, IndicationCategory, Urgency


class DoctorChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return obj.get_full_name() or obj.username


class SlotSearchForm(forms.Form):
    """Which doctor and which day to show free slots for (GET)."""

    doctor = DoctorChoiceField(
        label=_("Doctor"), queryset=selectors.oncologists(), empty_label=None
    )
    day = forms.DateField(
        label=_("Day"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )


class BookingForm(forms.Form):
    """The slot chosen (POST): doctor, start as an ISO time, kind."""

    doctor = DoctorChoiceField(queryset=selectors.oncologists())
    start = forms.CharField()
    kind = forms.ChoiceField(choices=ConsultationKind.choices, required=False)

    def clean_start(self):
        try:
            start = datetime.fromisoformat(self.cleaned_data["start"])
        except ValueError:
            raise forms.ValidationError(_("Not a valid time.")) from None
        if timezone.is_naive(start):
            start = timezone.make_aware(start)
        return start


class CancelForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"), widget=forms.Textarea(attrs={"rows": 2}), max_length=1000
    )


class CourseForm(forms.Form):
    category = forms.ChoiceField(label=_("Indication category"), choices=IndicationCategory.choices)
    fractions = forms.IntegerField(label=_("Number of fractions"), min_value=1, max_value=60)
    ready_date = forms.DateField(
        label=_("Plan ready on"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    urgency = forms.ChoiceField(
        label=_("Urgency"), choices=Urgency.choices, initial=Urgency.STANDARD
    )


class DowntimeForm(forms.Form):
    start = forms.DateTimeField(
        label=_("From"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    end = forms.DateTimeField(
        label=_("Until"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    reason = forms.CharField(label=_("Reason"), max_length=200)

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["end"] <= data["start"]:
            raise forms.ValidationError(_("The end must be after the start."))
        return data
