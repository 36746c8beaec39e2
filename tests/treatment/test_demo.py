"""``seed_demo``: a request in planning on a real multi-slice CT (TG-119 as DICOM) with its
RTSTRUCT, and a plan queued for the worker; the worker's calculation leaves it awaiting approval."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from protonpath.imaging.models import Series
from protonpath.referrals.models import State
from protonpath.treatment.models import Plan, PlanState
from protonpath.treatment.services import run_calculation


@pytest.mark.slow
@pytest.mark.django_db
def test_seed_demo_makes_a_plan_on_a_multi_slice_ct_that_a_worker_calculates():
    call_command("seed_demo", stdout=io.StringIO())
    plan = Plan.objects.get()
    r = plan.treatment_request
    assert r.state == State.PLANNING
    assert plan.state == PlanState.QUEUED  # the worker started by `make demo` takes it
    ct = Series.objects.get(pk=plan.ct_series_id)
    assert ct.modality == "CT" and ct.instance_count >= 60
    assert plan.rtstruct.series.modality == "RTSTRUCT"
    assert plan.setup["target"] == "OuterTarget"
    assert {m["standard"] for m in plan.setup["structures"]} == {"OuterTarget", "Core", "External"}
    assert run_calculation(plan.pk) == "calculated"
    plan.refresh_from_db()
    assert plan.state == PlanState.CALCULATED
    assert all(g["passed"] is not None for g in plan.results["goals"])
    call_command("seed_demo", stdout=io.StringIO())
    assert Plan.objects.count() == 1  # idempotent
