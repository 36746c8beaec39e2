"""The JSON API (django-ninja): the same operations as the pages, with the same rules.

Authentication: the browser session (with its CSRF token) or ``Authorization: Bearer <token>``
with a token issued to a user (``protonpath`` admin or ``manage.py issue_api_token``).
OpenAPI: ``/api/openapi.json``; interactive docs: ``/api/docs``.
"""

from __future__ import annotations

import importlib

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.utils import timezone
from ninja import NinjaAPI
from ninja.errors import AuthenticationError
from ninja.security import APIKeyCookie, HttpBearer

from protonpath.accounts.models import ApiToken


class BearerToken(HttpBearer):
    def authenticate(self, request, token):
        try:
            api_token = ApiToken.objects.select_related("user").get(digest=ApiToken.hash(token), revoked=False)
        except ApiToken.DoesNotExist:
            return None
        if not api_token.user.is_active:
            return None
        ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=timezone.now())
        request.user = api_token.user
        return api_token.user


class SessionAuth(APIKeyCookie):
    """The browser session; unsafe methods need the CSRF token, as on the pages."""

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self):
        super().__init__(csrf=True)

    def authenticate(self, request, key):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return user
        return None


api = NinjaAPI(
    title="protonpath API",
    version="1",
    description="Requests for treatment, medical files and their path through the proton therapy department.",
    auth=[BearerToken(), SessionAuth()],
    urls_namespace="api",
)


@api.exception_handler(ValidationError)
def _validation_error(request, exc: ValidationError):
    return api.create_response(request, {"detail": exc.messages}, status=400)


@api.exception_handler(PermissionDenied)
def _permission_denied(request, exc: PermissionDenied):
    return api.create_response(request, {"detail": str(exc) or "Permission denied."}, status=403)


@api.exception_handler(Http404)
def _not_found(request, exc: Http404):
    return api.create_response(request, {"detail": "Not found."}, status=404)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return api.create_response(request, {"detail": "Authentication required."}, status=401)


from protonpath.referrals.api import router as referrals_router  # noqa: E402

api.add_router("/", referrals_router)

for _app in ("department", "imaging", "international", "scheduling", "treatment"):
    if f"protonpath.{_app}" in settings.INSTALLED_APPS:
        try:
            _module = importlib.import_module(f"protonpath.{_app}.api")
        except ModuleNotFoundError as exc:
            if exc.name != f"protonpath.{_app}.api":
                raise
            continue
        api.add_router(f"/{_app}/", _module.router)
