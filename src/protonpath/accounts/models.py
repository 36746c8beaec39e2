"""Users with one role each, API tokens, and the audit trail."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    PATIENT = "patient", _("Patient")
    REFERRING_DOCTOR = "referring_doctor", _("Referring doctor")
    ADMIN_STAFF = "admin_staff", _("Administrative staff")
    ONCOLOGIST = "oncologist", _("Radiation oncologist")
    PHYSICIST = "physicist", _("Physicist / dosimetrist")
    HEAD = "head", _("Head of department")
    THERAPIST = "therapist", _("Radiation therapist")


#: Roles of the department's own staff (they may sign in to the Django admin).
STAFF_ROLES = frozenset({Role.ADMIN_STAFF, Role.ONCOLOGIST, Role.PHYSICIST, Role.HEAD, Role.THERAPIST})
#: Roles that reach the outside world: they see only what they submitted or what concerns them.
EXTERNAL_ROLES = frozenset({Role.PATIENT, Role.REFERRING_DOCTOR})


class User(AbstractUser):
    """A person who signs in. Every account has exactly one role."""

    role = models.CharField(_("role"), max_length=32, choices=Role.choices, default=Role.PATIENT)
    phone = models.CharField(_("telephone"), max_length=40, blank=True)
    institution = models.CharField(_("institution"), max_length=200, blank=True)
    specialty = models.CharField(_("specialty"), max_length=200, blank=True)
    preferred_language = models.CharField(
        _("preferred language"), max_length=8, choices=settings.LANGUAGES, default="en"
    )
    #: A patient account held by the patient's parent or legal guardian (a child's request): the
    #: request form then asks for the patient's own name instead of the account holder's.
    fills_in_for_patient = models.BooleanField(
        _("parent or legal guardian of the patient"),
        default=False,
        help_text=_("The account holder fills in the requests for the patient (a child, or an adult under guardianship)."),
    )

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self) -> str:
        return self.get_full_name() or self.username

    @property
    def is_department_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def is_external(self) -> bool:
        return self.role in EXTERNAL_ROLES

    def save(self, *args, **kwargs):
        # Staff roles use the Django admin; external roles never do, whatever a form says.
        if self.role in EXTERNAL_ROLES:
            self.is_staff = False
            self.is_superuser = False
        super().save(*args, **kwargs)


class ApiToken(models.Model):
    """A bearer token for the JSON API. Only its SHA-256 digest is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(_("name"), max_length=100)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked = models.BooleanField(_("revoked"), default=False)

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.name} ({self.user_id})"

    @staticmethod
    def hash(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def issue(cls, *, user: User, name: str) -> tuple[ApiToken, str]:
        """Create a token and return it with the raw secret, which is shown once."""
        raw = "pp_" + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, digest=cls.hash(raw))
        return token, raw


class AuditEvent(models.Model):
    """One line of the audit trail: who did or saw what, when, from where.

    The trail is append-only (no admin change or delete) and refers to objects by type and id;
    the ``summary`` never carries medical content.
    """

    class Action(models.TextChoices):
        VIEW = "view", _("viewed")
        CREATE = "create", _("created")
        UPDATE = "update", _("updated")
        DELETE = "delete", _("deleted")
        TRANSITION = "transition", _("changed state")
        DOWNLOAD = "download", _("downloaded")
        EXPORT = "export", _("exported")
        LOGIN = "login", _("signed in")
        LOGOUT = "logout", _("signed out")
        LOGIN_FAILED = "login_failed", _("failed sign-in")
        LOGIN_REFUSED = "login_refused", _("sign-in refused (too many failures)")
        RESET_REQUESTED = "reset_requested", _("asked for a password reset")
        PASSWORD_RESET = "password_reset", _("reset the password")
        DENIED = "denied", _("was denied access")

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_role = models.CharField(max_length=32, blank=True)
    action = models.CharField(max_length=20, choices=Action.choices)
    object_type = models.CharField(max_length=80, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    # The request for treatment concerned, to list a patient's whole trail in one query.
    treatment_request_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    from_state = models.CharField(max_length=40, blank=True)
    to_state = models.CharField(max_length=40, blank=True)
    summary = models.CharField(max_length=300, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    via = models.CharField(max_length=20, blank=True, help_text="web, api, cli, dicom")

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = _("audit event")
        verbose_name_plural = _("audit trail")
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_id} {self.action} {self.object_type}#{self.object_id}"
