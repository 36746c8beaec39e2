"""How many threads the optimisers take (protonpath.planning.threads), read from a real /proc
and from made-up ones, and what that choice must not change: the optimised weights."""

from __future__ import annotations

import subprocess
import sys
import time

import numba
import numpy as np
import pytest

from protonpath.planning import optimise, threads
from protonpath.planning.pipeline import default_objectives

from .test_optimise import BINDING_LIMITS, RX, make_plan


def fake_proc(tmp_path, running_total: int, own_states: list[str]):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "loadavg").write_text(f"0.52 0.40 0.31 {running_total}/412 12345\n")
    for number, state in enumerate(own_states, start=100):
        task = tmp_path / "self" / "task" / str(number)
        task.mkdir(parents=True)
        # a command name with a space and a bracket, as a thread may be named
        task.joinpath("stat").write_text(f"{number} (numba worker) x) {state} 1 2 3 4 5\n")
    return tmp_path


@pytest.mark.parametrize(
    ("configured", "cpus", "elsewhere", "expected"),
    [(2, 2, 0, 2), (2, 2, 1, 1), (2, 2, 5, 1), (8, 16, 10, 6), (4, 16, 0, 4), (2, 2, None, 2), (1, 8, 0, 1)],
)
def test_threads_fit_the_cpus_other_processes_leave_free(configured, cpus, elsewhere, expected):
    assert threads.fitting_threads(configured, cpus, elsewhere) == expected


def test_other_processes_threads_are_the_running_ones_not_ours(tmp_path):
    # 5 runnable on the machine, 2 of them ours (the reader and a spinning OpenMP thread)
    proc = fake_proc(tmp_path, 5, ["R", "R", "S", "S"])
    assert threads.others_running(proc, looks=2, pause_s=0.0) == 3
    quiet = fake_proc(tmp_path / "quiet", 1, ["R", "S"])
    assert threads.others_running(quiet, looks=1) == 0


def test_unreadable_proc_leaves_the_configured_threads(tmp_path):
    assert threads.others_running(tmp_path / "nowhere") is None
    (tmp_path / "loadavg").write_text("garbage\n")
    assert threads.others_running(tmp_path) is None


@pytest.fixture
def busy_cpus():
    """As many busy processes as this process has CPUs, running."""
    count = threads.cpus()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    time.sleep(0.3)
    yield count
    for process in busy:
        process.kill()
        process.wait()


def test_with_every_cpu_busy_elsewhere_one_thread_runs_and_numba_is_restored(busy_cpus):
    before = numba.get_num_threads()
    assert threads.others_running() >= busy_cpus
    with threads.fitted_threads(max(2, before)) as count:
        assert count == 1
        assert numba.get_num_threads() == 1
        # the work is still split as configured, so that sums do not depend on the threads
        assert threads.work_parts() == max(2, before)
    assert numba.get_num_threads() == before
    assert threads.work_parts() == before


@pytest.fixture(scope="module")
def one_beam_plan(cube_plan_case):
    return make_plan(cube_plan_case, [0.0], default_objectives("PTV", RX, ["Rectum"], {"Rectum": 0.1}))


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="one CPU: a single thread always")
def test_weights_are_the_same_to_the_last_bit_on_one_thread_or_two(one_beam_plan, monkeypatch):
    p = one_beam_plan
    rows = {s.name: p.dose_matrix.rows_of(s.mask) for s in p.structures}
    numba.set_num_threads(2)
    used = []
    fitting = threads.fitting_threads

    def recorded(*args):
        used.append(fitting(*args))
        return used[-1]

    monkeypatch.setattr(threads, "fitting_threads", recorded)
    monkeypatch.setattr(threads, "others_running", lambda: 0)
    quiet = optimise.optimise_weights(p.dose_matrix, BINDING_LIMITS, rows, max_iterations=80)
    monkeypatch.setattr(threads, "others_running", lambda: 1)
    busy = optimise.optimise_weights(p.dose_matrix, BINDING_LIMITS, rows, max_iterations=80)
    assert used == [2, 1]
    assert quiet.iterations == busy.iterations > 10
    assert np.array_equal(quiet.weights, busy.weights)
    assert quiet.objective == busy.objective
