from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent

#: Answers that refuse access to what a URL names: forbidden, or not found (another owner's
#: object is answered "not found", so as not to reveal that it exists).
REFUSALS = frozenset({403, 404})


class AuditContextMiddleware:
    """Makes the client address and channel available to :func:`audit.record`, and audits every
    refusal at one place.

    Every page and API answer passes here after Django (or django-ninja's exception handlers)
    turned a ``PermissionDenied`` or ``Http404`` into its 403 or 404: when the view did not write
    a "denied" row itself, this writes one (the user, the URL pattern, the id in the path); when
    it did, no second. A 404 for a URL no pattern matches is no refusal and leaves no row.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        via = "api" if request.path.startswith("/api/") else "web"
        token = audit.set_context(audit.AuditContext(ip_address=request.META.get("REMOTE_ADDR"), via=via))
        try:
            response = self.get_response(request)
            if response.status_code in REFUSALS and not audit.denial_recorded():
                self._record_refusal(request, response)
            return response
        finally:
            audit.reset_context(token)

    @staticmethod
    def _record_refusal(request, response) -> None:
        match = getattr(request, "resolver_match", None)
        if match is None or (response.status_code == 404 and not match.kwargs):
            return
        ids = [str(v) for v in match.kwargs.values() if isinstance(v, int) or str(v).isdigit()]
        audit.record(
            actor=getattr(request, "user", None),
            action=AuditEvent.Action.DENIED,
            object_type=(match.view_name or "")[:80],
            object_id=(ids[0] if ids else "")[:64],
            summary=f"{request.method} {response.status_code}",
        )
