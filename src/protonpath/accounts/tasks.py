"""Background work of the accounts (Django Tasks: immediate by default, database workers at scale)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext
from django_tasks import task

from protonpath.accounts.models import User

logger = logging.getLogger(__name__)


@task()
def send_password_reset(user_id: int) -> None:
    """E-mail a one-time password-reset link to an account, in its language.

    The token is made here, by the worker, so that no link is stored in the task queue. The
    message holds the link and nothing else about the person.
    """
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None or not user.email or not user.has_usable_password():
        return
    with translation.override(user.preferred_language or settings.LANGUAGE_CODE):
        path = reverse(
            "accounts:password_reset_confirm",
            kwargs={
                "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
                "token": default_token_generator.make_token(user),
            },
        )
        context = {
            "link": settings.PROTONPATH_BASE_URL.rstrip("/") + path,
            "minutes": max(1, settings.PASSWORD_RESET_TIMEOUT // 60),
            # The default name has a French translation; a department's own name is used as set.
            "department": gettext(settings.PROTONPATH_DEPARTMENT_NAME),
        }
        subject = " ".join(render_to_string("accounts/password_reset_subject.txt", context).split())
        body = render_to_string("accounts/password_reset_email.txt", context)
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email], fail_silently=False)
    except Exception as exc:
        # Mail servers' errors quote the address: the task fails without it in its traceback.
        raise RuntimeError(f"password reset e-mail for user {user.pk} failed: {type(exc).__name__}") from None
    logger.info("password reset link sent user=%s", user.pk)
