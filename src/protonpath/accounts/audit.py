"""Writing the audit trail.

Call :func:`record` from services and views for every access to and change of patient data. The
request context (IP address, channel) is taken from :mod:`protonpath.accounts.middleware` when a
web or API request is being served.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass, field

from django.db import models

from protonpath.accounts.models import AuditEvent

logger = logging.getLogger("protonpath.audit")


@dataclass(frozen=True)
class AuditContext:
    ip_address: str | None = None
    via: str = "web"
    #: Per request: whether a "denied" row was written while serving it (the middleware writes
    #: one for a refusal that no view recorded, and no second one).
    denials: list = field(default_factory=list, compare=False)


_context: contextvars.ContextVar[AuditContext] = contextvars.ContextVar(
    "protonpath_audit_context", default=AuditContext(via="system")  # noqa: B039 (frozen dataclass)
)


def set_context(ctx: AuditContext) -> contextvars.Token:
    return _context.set(ctx)


def reset_context(token: contextvars.Token) -> None:
    _context.reset(token)


def current_context() -> AuditContext:
    return _context.get()


def record(
    *,
    actor,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str | int = "",
    treatment_request_id: int | None = None,
    from_state: str = "",
    to_state: str = "",
    summary: str = "",
) -> AuditEvent:
    """Append one event to the trail and log it without personal data."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or obj.pk
        if treatment_request_id is None:
            treatment_request_id = _request_id_of(obj)
    ctx = current_context()
    user = actor if getattr(actor, "is_authenticated", False) else None
    event = AuditEvent.objects.create(
        actor=user,
        actor_role=getattr(user, "role", "") or "",
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        treatment_request_id=treatment_request_id,
        from_state=from_state,
        to_state=to_state,
        summary=summary[:300],
        ip_address=ctx.ip_address,
        via=ctx.via,
    )
    if action == AuditEvent.Action.DENIED:
        ctx.denials.append(event.pk)
    logger.info(
        "audit actor=%s action=%s object=%s#%s", getattr(user, "pk", None), action, object_type, object_id
    )
    return event


def denial_recorded() -> bool:
    """Whether a "denied" row written while serving the current request is in the trail (one
    written inside a transaction that was then rolled back is not)."""
    denials = current_context().denials
    return bool(denials) and AuditEvent.objects.filter(pk__in=denials).exists()


def _request_id_of(obj: models.Model) -> int | None:
    label = obj._meta.label_lower
    if label == "referrals.treatmentrequest":
        return obj.pk
    return getattr(obj, "treatment_request_id", None)
