"""Background work of planning: the plan calculation and the export to the OIS (Django Tasks on
database workers: ``manage.py db_worker``)."""

from __future__ import annotations

from django_tasks import task


@task()
def calculate_plan(plan_id: int) -> str:
    """Calculate one plan (progress on its row; stops when its cancel flag is set)."""
    from protonpath.treatment.services import run_calculation

    return run_calculation(plan_id)


@task()
def send_plan(plan_id: int) -> str:
    """C-STORE an approved plan to the configured destination."""
    from protonpath.treatment.approval import send_to_destination
    from protonpath.treatment.models import Plan, PlanState

    plan = Plan.objects.select_related("rtstruct").get(pk=plan_id)
    if plan.state != PlanState.APPROVED:
        return "not approved"
    return send_to_destination(plan)
