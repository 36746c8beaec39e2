"""Response headers that every page and API answer of the department carries.

* ``Content-Security-Policy``: scripts, styles, images and fonts come from the site itself (htmx
  included, served from static files); no inline script or style, no framing, forms post only
  here. The policy is ``settings.CONTENT_SECURITY_POLICY``.
* ``Cache-Control: no-store`` on everything the application itself answers (pages, API answers,
  downloads): they carry health data, which must stay in no browser or proxy cache. Static files
  are answered before this middleware (WhiteNoise) and stay cacheable.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.cache import patch_cache_control


def policy_header(policy: dict[str, str]) -> str:
    return "; ".join(f"{directive} {sources}" for directive, sources in policy.items())


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = policy_header(getattr(settings, "CONTENT_SECURITY_POLICY", {}))

    def __call__(self, request):
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.policy
        # Replaces any weaker caching a view may have asked for: nothing it answers may be stored.
        if "Cache-Control" in response:
            del response["Cache-Control"]
        patch_cache_control(response, no_store=True, private=True)
        return response
