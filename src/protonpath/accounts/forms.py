"""Sign-in forms that respect the throttle, and the password-reset request form."""

from __future__ import annotations

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.utils.translation import ngettext

from protonpath.accounts import audit, throttle
from protonpath.accounts.models import AuditEvent


class ThrottledSignInMixin:
    """Refuses a sign-in, before any password is checked, while its name or address is locked."""

    throttled = False

    def clean(self):
        username = self.cleaned_data.get("username")
        refused = throttle.refusal(username, throttle.client_ip(self.request))
        if refused is not None:
            self.throttled = True
            # Neither the attempted name nor the account it may match is recorded, as for failures.
            audit.record(
                actor=None,
                action=AuditEvent.Action.LOGIN_REFUSED,
                object_type="accounts.user",
                summary=f"too many failed sign-ins ({refused.subject})",
            )
            raise forms.ValidationError(
                ngettext(
                    "Too many failed sign-ins. For your security, signing in is paused: "
                    "please try again in %(minutes)d minute.",
                    "Too many failed sign-ins. For your security, signing in is paused: "
                    "please try again in %(minutes)d minutes.",
                    refused.minutes,
                )
                % {"minutes": refused.minutes},
                code="throttled",
            )
        return super().clean()


class SignInForm(ThrottledSignInMixin, AuthenticationForm):
    pass


class AdminSignInForm(ThrottledSignInMixin, AdminAuthenticationForm):
    pass


class ResetRequestForm(PasswordResetForm):
    """Asks for a reset link. The page that follows is the same whether the address is known or not."""

    def save(self, **kwargs) -> None:  # the view's e-mail arguments are not used: see tasks.py
        from protonpath.accounts import tasks

        users = list(self.get_users(self.cleaned_data["email"]))
        for user in users:
            # The address is not recorded; the account it matched is, by its id.
            audit.record(actor=None, action=AuditEvent.Action.RESET_REQUESTED, obj=user)
            tasks.send_password_reset.enqueue(user.pk)
        if not users:
            audit.record(
                actor=None,
                action=AuditEvent.Action.RESET_REQUESTED,
                object_type="accounts.user",
                summary="no active account with that address",
            )
