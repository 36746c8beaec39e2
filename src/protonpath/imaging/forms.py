from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class MatchForm(forms.Form):
    reference = forms.CharField(
        label=_("Request reference"), max_length=20, help_text=_("For example PP-2026-00001")
    )
    confirm_no_identity = forms.BooleanField(
        label=_("The images carry no name or birth date: I confirm they are this patient's"), required=False
    )


class WindowForm(forms.Form):
    """Query parameters of a rendered slice: window centre and width (modality units)."""

    center = forms.FloatField(required=False, min_value=-100_000, max_value=100_000)
    width = forms.FloatField(required=False, min_value=1, max_value=200_000)
