"""API endpoints of planning (mounted at /api/treatment/): the same rules as the pages."""

from __future__ import annotations

import datetime

from django.http import Http404
from ninja import Router, Schema

from protonpath.referrals import selectors as referral_selectors
from protonpath.treatment import approval, selectors, services

router = Router(tags=["treatment"])


class PrescriptionOut(Schema):
    version: int
    target: str
    dose_gy: float
    fractions: int
    created_at: datetime.datetime


class PlanOut(Schema):
    id: int
    request_id: int
    version: int
    state: str
    stage: str
    progress: float
    error: str
    prescription_version: int
    session_minutes: int | None = None
    statistics: dict = {}
    goals: list = []
    rtplan_sha256: str
    physicist_approved_at: datetime.datetime | None = None
    oncologist_approved_at: datetime.datetime | None = None


class SummaryOut(Schema):
    prescription: PrescriptionOut | None = None
    approved_at: datetime.datetime | None = None


def _rx(rx) -> dict | None:
    if rx is None:
        return None
    return {"version": rx.version, "target": rx.target, "dose_gy": float(rx.dose_gy), "fractions": rx.fractions,
            "created_at": rx.created_at}


def _plan(p) -> dict:
    return {
        "id": p.pk, "request_id": p.treatment_request_id, "version": p.version, "state": p.state, "stage": p.stage,
        "progress": p.progress, "error": p.error_display(), "prescription_version": p.prescription.version,
        "session_minutes": p.results.get("session_minutes"), "statistics": p.results.get("statistics", {}),
        "goals": p.results.get("goals", []), "rtplan_sha256": p.rtplan_sha256 if p.is_frozen else "",
        "robust": p.robust, "worst_case": p.robustness.get("worst_case", {}),
        "physicist_approved_at": p.physicist_approved_at, "oncologist_approved_at": p.oncologist_approved_at,
    }


@router.get("/requests/{pk}/summary", response=SummaryOut)
def request_summary(request, pk: int):
    """The prescription and approval date: what every reader of the request may see."""
    r = referral_selectors.get_request_for(request.user, pk)
    summary = selectors.summary_for(r)
    return {"prescription": _rx(summary["prescription"]), "approved_at": summary["approved_at"]}


@router.get("/requests/{pk}/plans", response=list[PlanOut])
def request_plans(request, pk: int):
    r = referral_selectors.get_request_for(request.user, pk, audit_view=False)
    if not selectors.may_see_plans(request.user):
        services._deny(request.user, r, "plans")
        raise Http404
    return [_plan(p) for p in selectors.plans_of(r)]


@router.get("/plans/{pk}", response=PlanOut)
def plan_detail(request, pk: int):
    return _plan(selectors.get_plan_for(request.user, pk))


@router.post("/plans/{pk}/calculate", response=PlanOut)
def plan_calculate(request, pk: int):
    plan = selectors.get_plan_for(request.user, pk, audit_view=False)
    return _plan(services.start_calculation(actor=request.user, plan=plan))


@router.post("/plans/{pk}/cancel", response=PlanOut)
def plan_cancel(request, pk: int):
    plan = selectors.get_plan_for(request.user, pk, audit_view=False)
    return _plan(services.cancel_calculation(actor=request.user, plan=plan))


@router.post("/plans/{pk}/approve", response=PlanOut)
def plan_approve(request, pk: int):
    plan = selectors.get_plan_for(request.user, pk, audit_view=False)
    return _plan(approval.approve(actor=request.user, plan=plan))
