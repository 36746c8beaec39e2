from django import forms
from django.contrib import messages
from django.contrib.auth import login, password_validation
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from protonpath.accounts import audit, throttle
from protonpath.accounts.forms import ResetRequestForm, SignInForm
from protonpath.accounts.models import AuditEvent, Role, User


def home(request):
    if not request.user.is_authenticated:
        return render(request, "home.html")
    if request.user.role == Role.THERAPIST:  # at the console: the gantry's day first
        return redirect("scheduling:agenda_today")
    if request.user.is_department_staff:
        return redirect("referrals:queues")
    return redirect("referrals:list")


class SignInView(auth_views.LoginView):
    """Sign-in, refused for a while after repeated failures (see :mod:`protonpath.accounts.throttle`)."""

    template_name = "accounts/login.html"
    authentication_form = SignInForm

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.throttled:
            response.status_code = 429
        return response


class PasswordResetView(auth_views.PasswordResetView):
    """Asks for a reset link by e-mail; the next page is the same whether the address is known."""

    template_name = "accounts/password_reset_form.html"
    form_class = ResetRequestForm
    success_url = reverse_lazy("accounts:password_reset_done")


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Sets a new password from a link's one-time token; the user then signs in with it."""

    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("accounts:password_reset_complete")

    def form_valid(self, form):
        response = super().form_valid(form)
        user = form.user
        audit.record(actor=user, action=AuditEvent.Action.PASSWORD_RESET, obj=user, summary="by e-mail link")
        # Whoever holds the mailbox may sign in again at once, even if the name was locked.
        throttle.clear_account(user.get_username())
        return response


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"


#: The sign-up choice of a parent or legal guardian (a patient account, see User.fills_in_for_patient).
GUARDIAN = "guardian"


class SignupForm(forms.ModelForm):
    role = forms.ChoiceField(
        label=_("I am"),
        choices=[
            (Role.PATIENT, _("a patient, for myself")),
            (GUARDIAN, _("the parent or legal guardian of a patient (a child, or an adult under guardianship)")),
            (Role.REFERRING_DOCTOR, _("a referring doctor")),
        ],
        widget=forms.RadioSelect,
        help_text=_("A parent or legal guardian gives their own name here; the request form then asks for the patient's."),
    )
    password1 = forms.CharField(label=_("Password"), widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(label=_("Password again"), widget=forms.PasswordInput, strip=False)

    # Who signs up first: a parent or legal guardian then knows the names asked are their own.
    field_order = ("role", "username", "first_name", "last_name", "email", "phone", "institution", "preferred_language")

    class Meta:
        model = User
        fields = ("username", "first_name", "last_name", "email", "phone", "institution", "preferred_language")

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if not email:
            raise forms.ValidationError(_("An e-mail address is needed to tell you about your request."))
        return email

    def clean(self):
        data = super().clean()
        if data.get("password1") != data.get("password2"):
            self.add_error("password2", _("The two passwords differ."))
        elif data.get("password1"):
            candidate = User(username=data.get("username", ""), email=data.get("email", ""))
            try:
                password_validation.validate_password(data["password1"], candidate)
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data

    def save(self, commit=True):
        user = super().save(commit=False)
        # A parent or legal guardian holds a patient account that fills in for the patient.
        user.fills_in_for_patient = self.cleaned_data["role"] == GUARDIAN
        user.role = Role.PATIENT if user.fills_in_for_patient else self.cleaned_data["role"]
        user.set_password(self.cleaned_data["password1"])
        if commit:
            user.save()
        return user


def signup(request):
    form = SignupForm(request.POST or None, initial={"preferred_language": translation.get_language() or "en"})
    if request.method == "POST" and form.is_valid():
        user = form.save()
        audit.record(actor=user, action=AuditEvent.Action.CREATE, obj=user, summary="self sign-up")
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, _("Welcome. You can now make a request for treatment."))
        return redirect("home")
    return render(request, "accounts/signup.html", {"form": form})


@login_required
def profile(request):
    if request.method == "POST":
        language = request.POST.get("preferred_language")
        if language in dict(User._meta.get_field("preferred_language").choices):
            request.user.preferred_language = language
            request.user.save(update_fields=["preferred_language"])
            audit.record(actor=request.user, action=AuditEvent.Action.UPDATE, obj=request.user, summary="language")
            messages.success(request, _("Saved."))
            response = redirect("accounts:profile")
            from django.conf import settings

            response.set_cookie(settings.LANGUAGE_COOKIE_NAME, language)
            return response
    return render(request, "accounts/profile.html")
