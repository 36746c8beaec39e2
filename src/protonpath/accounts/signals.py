from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from protonpath.accounts import audit, throttle
from protonpath.accounts.models import AuditEvent


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    audit.record(actor=user, action=AuditEvent.Action.LOGIN, obj=user)
    throttle.clear_account(user.get_username())


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        audit.record(actor=user, action=AuditEvent.Action.LOGOUT, obj=user)


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    # The attempted user name is personal data: it is not recorded (the throttle keeps only a
    # keyed hash of it, in the cache, for the window).
    audit.record(actor=None, action=AuditEvent.Action.LOGIN_FAILED, object_type="accounts.user")
    username = credentials.get(get_user_model().USERNAME_FIELD)
    throttle.register_failure(username if isinstance(username, str) else None, throttle.client_ip(request))
