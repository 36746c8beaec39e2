from protonpath.accounts import audit


class AuditContextMiddleware:
    """Makes the client address and channel available to :func:`audit.record`."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        via = "api" if request.path.startswith("/api/") else "web"
        token = audit.set_context(audit.AuditContext(ip_address=request.META.get("REMOTE_ADDR"), via=via))
        try:
            return self.get_response(request)
        finally:
            audit.reset_context(token)
