"""Plans on real task workers: two ``manage.py db_worker`` processes share the queue; one is
killed mid-plan; its plan ends failed (worker lost) and runs again. On SQLite (the test database
file) and, with DATABASE_URL set, on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from protonpath.imaging.selectors import structure_sets_for
from protonpath.treatment import services
from protonpath.treatment.models import Plan, PlanState
from tests.treatment.conftest import file_case, in_planning

REPO = Path(__file__).resolve().parents[2]
# slow enough (a few seconds per plan on 2 cores) to be killed mid-way
SLOW = {"dose_grid_mm": 3.0, "spot_spacing_mm": 4.0, "layer_spacing_mm": 3.0, "max_iterations": 400}


def database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or "postgres"
    return f"postgresql://{user}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def wait_for(condition, timeout_s: float, what: str):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def plan_in(r, physicist, oncologist):
    services.prescribe(actor=oncologist, treatment_request=r, target="PTV_60", dose_gy=60, fractions=30)
    ct = services.planning_ct_series(r)
    rs = structure_sets_for(ct)[0]
    setup = services.initial_setup(r, ct, rs, "adult_standard")
    setup["settings"] = dict(SLOW)
    return services.create_plan(actor=physicist, treatment_request=r, ct_series=ct, rtstruct=rs,
                                category="adult_standard", setup=setup)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_workers_and_a_worker_killed_mid_plan(settings, doctor, other_doctor, staff, oncologist, physicist, tmp_path):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    settings.PLAN_HEARTBEAT_TIMEOUT_S = 4
    plans = []
    for i, owner in enumerate((doctor, other_doctor)):
        r = in_planning(owner, staff=staff, oncologist=oncologist)
        file_case(r, physicist, tmp_path / f"case{i}")
        plans.append(plan_in(r, physicist, oncologist))
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "PROTONPATH_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PLAN_HEARTBEAT_TIMEOUT_S": "4",
        "TASKS_BACKEND": "django_tasks_db.DatabaseBackend",
        "NUMBA_THREADING_LAYER": "workqueue",
        "NUMBA_NUM_THREADS": "1",
    }
    cmd = [sys.executable, str(REPO / "manage.py"), "db_worker", "--no-startup-delay", "--interval", "0.2",
           "--no-reload", "-v", "0"]
    workers = {}
    try:
        for i in range(2):
            p = subprocess.Popen([*cmd, "--worker-id", f"test-{os.getpid()}-{i}"], env=env, cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            workers[p.pid] = p
        for plan in plans:
            services.start_calculation(actor=physicist, plan=plan)

        def both_running():
            rows = list(Plan.objects.filter(pk__in=[p.pk for p in plans], state=PlanState.RUNNING))
            return rows if len(rows) == 2 else None

        running = wait_for(both_running, 120, "both plans running")
        pids = {int(p.worker.rsplit(":", 1)[1]) for p in running}
        assert pids == set(workers), "each worker takes one plan"
        victim_plan = running[0]
        victim_pid = int(victim_plan.worker.rsplit(":", 1)[1])
        wait_for(lambda: Plan.objects.get(pk=victim_plan.pk).progress > 0.0, 60, "progress reported")
        os.kill(victim_pid, signal.SIGKILL)
        workers.pop(victim_pid).wait(10)
        other = next(p for p in running if p.pk != victim_plan.pk)
        wait_for(lambda: Plan.objects.get(pk=other.pk).state == PlanState.CALCULATED, 300, "the other plan calculated")
        # the killed worker's plan stays 'running' only until its heartbeat is older than the timeout
        time.sleep(4.5)
        assert services.sweep_stale_plans() == 1
        victim_plan.refresh_from_db()
        assert victim_plan.state == PlanState.FAILED
        assert victim_plan.error_code == "worker_lost"
        assert "worker" in victim_plan.error_display()
        services.start_calculation(actor=physicist, plan=victim_plan)
        wait_for(lambda: Plan.objects.get(pk=victim_plan.pk).state == PlanState.CALCULATED, 300, "the plan calculated again")
    finally:
        for p in workers.values():
            p.terminate()
        for p in workers.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cancel_stops_a_running_plan_on_a_worker(settings, doctor, staff, oncologist, physicist, tmp_path):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    r = in_planning(doctor, staff=staff, oncologist=oncologist)
    file_case(r, physicist, tmp_path / "case")
    plan = plan_in(r, physicist, oncologist)
    env = {**os.environ, "DATABASE_URL": database_url(), "PROTONPATH_MEDIA_ROOT": str(settings.MEDIA_ROOT),
           "TASKS_BACKEND": "django_tasks_db.DatabaseBackend", "NUMBA_THREADING_LAYER": "workqueue"}
    p = subprocess.Popen([sys.executable, str(REPO / "manage.py"), "db_worker", "--no-startup-delay", "--interval",
                          "0.2", "--no-reload", "-v", "0"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        services.start_calculation(actor=physicist, plan=plan)
        wait_for(lambda: Plan.objects.get(pk=plan.pk).progress > 0.0, 120, "progress reported")
        services.cancel_calculation(actor=physicist, plan=Plan.objects.get(pk=plan.pk))
        wait_for(lambda: Plan.objects.get(pk=plan.pk).state == PlanState.CANCELLED, 120, "plan cancelled")
        plan.refresh_from_db()
        assert not plan.results and not plan.rtplan_file
    finally:
        p.terminate()
        p.wait(15)
