"""The planning section of a request's page (see referrals.views._panels)."""

from __future__ import annotations

from protonpath.referrals.models import State
from protonpath.treatment import selectors, services


def request_panels(request, treatment_request) -> list[dict]:
    user = request.user
    if selectors.may_see_plans(user):
        shown = services.PRESCRIPTION_STATES | {State.SCHEDULED, State.IN_TREATMENT, State.COMPLETED}
        if treatment_request.state not in shown and not treatment_request.prescriptions.exists():
            return []
        plans = selectors.plans_of(treatment_request)
        return [{
            "template": "treatment/_panel.html",
            "context": {
                "staff": True,
                "prescription": services.current_prescription(treatment_request),
                "decision": services.prescription_from_decision(treatment_request),
                "plans": plans,
                "can_prescribe": user.role in services.PRESCRIBERS and treatment_request.state in services.PRESCRIPTION_STATES,
                "can_plan": services.may_plan(user, treatment_request),
            },
        }]
    summary = selectors.summary_for(treatment_request)
    if not summary["prescription"]:
        return []
    return [{"template": "treatment/_panel.html", "context": {"staff": False, **summary}}]
