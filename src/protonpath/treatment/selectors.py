"""Reads: who sees which plans. Staff see plans in full; patients and referring doctors see a
plain summary of what concerns them (prescription, dates), never the editable plan."""

from __future__ import annotations

from django.http import Http404
from django.utils.translation import gettext as _

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent
from protonpath.referrals.selectors import visible_requests
from protonpath.treatment.models import Plan, PlanState
from protonpath.treatment.services import PLAN_VIEWERS, current_prescription, sweep_stale_plans


def may_see_plans(user) -> bool:
    return user.is_authenticated and user.role in PLAN_VIEWERS


def plans_of(treatment_request):
    sweep_stale_plans()
    return list(treatment_request.plans.select_related("prescription", "physicist_approved_by", "oncologist_approved_by"))


def get_plan_for(user, pk: int, *, audit_view: bool = True) -> Plan:
    """A plan of a request ``user`` may see, for staff; else 404, audited."""
    if may_see_plans(user):
        sweep_stale_plans()
        try:
            plan = Plan.objects.select_related(
                "treatment_request__patient", "prescription", "ct_series__study", "rtstruct"
            ).get(pk=pk, treatment_request__in=visible_requests(user))
        except (Plan.DoesNotExist, ValueError, TypeError):
            plan = None
        if plan is not None:
            if audit_view:
                audit.record(actor=user, action=AuditEvent.Action.VIEW, obj=plan)
            return plan
    audit.record(actor=user, action=AuditEvent.Action.DENIED, object_type="treatment.plan", object_id=str(pk))
    raise Http404(_("No such plan."))


def approved_plan(treatment_request) -> Plan | None:
    return treatment_request.plans.filter(state=PlanState.APPROVED).order_by("-version").first()


def summary_for(treatment_request) -> dict:
    """What patients and referring doctors see: the prescription and the approval date."""
    rx = current_prescription(treatment_request)
    plan = approved_plan(treatment_request)
    return {
        "prescription": rx,
        "approved_at": plan.oncologist_approved_at if plan else None,
        "planning": treatment_request.plans.exclude(state=PlanState.SUPERSEDED).exists(),
    }
