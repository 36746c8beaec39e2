from __future__ import annotations

from django import forms
from django.forms import modelformset_factory
from django.utils.translation import gettext_lazy as _

from protonpath.accounts.models import STAFF_ROLES, User
from protonpath.department.models import Decision, OpeningHours, Service, TeamMember
from protonpath.department.services import CHAIR_ROLES


def staff_users():
    return User.objects.filter(role__in=STAFF_ROLES, is_active=True).order_by("last_name", "first_name")


class TeamMemberForm(forms.ModelForm):
    class Meta:
        model = TeamMember
        fields = ("display_order", "title", "name", "role", "specialties_en", "specialties_fr", "user", "active")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Only staff accounts are offered: the directory never lists patients' names.
        self.fields["user"].queryset = staff_users()


TeamFormSet = modelformset_factory(
    TeamMember,
    form=TeamMemberForm,
    fields=("display_order", "title", "name", "role", "specialties_en", "specialties_fr", "user", "active"),
    widgets={
        "specialties_en": forms.Textarea(attrs={"rows": 2}),
        "specialties_fr": forms.Textarea(attrs={"rows": 2}),
        "display_order": forms.NumberInput(attrs={"style": "width:4.5rem"}),
        "title": forms.TextInput(attrs={"size": 4}),
    },
    extra=1,
    can_delete=True,
)

ServiceFormSet = modelformset_factory(
    Service, fields=("name_en", "name_fr", "phone", "location_en", "location_fr"), extra=0, can_delete=False
)

HoursFormSet = modelformset_factory(
    OpeningHours,
    fields=("service", "weekday", "opens", "closes"),
    widgets={"opens": forms.TimeInput(attrs={"type": "time"}), "closes": forms.TimeInput(attrs={"type": "time"})},
    extra=1,
    can_delete=True,
)


class MeetingForm(forms.Form):
    starts_at = forms.DateTimeField(
        label=_("Date and time"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    )
    location = forms.CharField(label=_("Room"), max_length=120, required=False)
    chair = forms.ModelChoiceField(label=_("Chair"), queryset=User.objects.none(), required=False)
    attendees = forms.ModelMultipleChoiceField(
        label=_("Attendees"), queryset=User.objects.none(), required=False, widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["chair"].queryset = staff_users().filter(role__in=CHAIR_ROLES)
        self.fields["attendees"].queryset = staff_users()


class AgendaAddForm(forms.Form):
    treatment_request = forms.IntegerField(widget=forms.HiddenInput)


class ItemDecisionForm(forms.Form):
    decision = forms.ChoiceField(label=_("Decision"), choices=Decision.choices, widget=forms.RadioSelect)
    dose_gy = forms.DecimalField(
        label=_("Proposed dose (Gy RBE)"), max_digits=5, decimal_places=2, min_value=0.01, max_value=90, required=False
    )
    fractions = forms.IntegerField(label=_("Number of fractions"), min_value=1, max_value=60, required=False)
    note = forms.CharField(label=_("Note"), widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def clean(self):
        data = super().clean()
        decision = data.get("decision")
        if decision == Decision.ACCEPTED and (data.get("dose_gy") is None or data.get("fractions") is None):
            raise forms.ValidationError(_("An accepted request needs the proposed dose and number of fractions."))
        if decision in (Decision.DECLINED, Decision.INFO_REQUESTED) and not (data.get("note") or "").strip():
            raise forms.ValidationError(_("Please give a reason."))
        return data


