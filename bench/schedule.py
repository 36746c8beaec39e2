"""Benchmark of the gantry scheduler against greedy first-fit, in the same process.

Usage::

    .venv/bin/python bench/schedule.py [--seed 1] [--time-limit 50] [--network-time-limit 15]
                                       [--skip-network]

For a generated year of one gantry (about 2,400 sessions) and for a network of ten gantries
(ten times that, solved gantry by gantry), prints for first-fit and for the solver: wall time,
gantry utilisation, mean and largest waiting (working days from the ready date), courses
starting after their due date, sessions outside the patient's usual time window and the
checker's violations other than late starts; then the ratio of mean waiting times.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from protonpath.scheduling.baseline import first_fit_schedule
from protonpath.scheduling.checker import check_schedule, schedule_metrics
from protonpath.scheduling.generate import generate_year
from protonpath.scheduling.solver import SolverOptions, solve

HEADER = (
    f"{'method':<10} {'time s':>7} {'use %':>6} {'wait d':>7} {'max d':>6} "
    f"{'late':>5} {'outside':>8}  other violations"
)


def run(name, problem, options):
    """Print one instance: first-fit, then the solver, then the ratio of waiting times."""
    sessions = sum(c.fraction_count for c in problem.courses)
    print(
        f"\n{name}: {len(problem.gantry_ids)} gantr{'y' if len(problem.gantry_ids) == 1 else 'ies'}, "
        f"{len(problem.courses)} courses, {sessions} sessions, "
        f"solver limit {options.time_limit_s:g} s per gantry"
    )
    print(HEADER)
    results = {}
    for method, schedule_of in (
        ("first-fit", first_fit_schedule),
        ("cp-sat", lambda p: solve(p, options)),
    ):
        started = time.perf_counter()
        schedule = schedule_of(problem)
        elapsed = time.perf_counter() - started
        metrics = schedule_metrics(schedule)
        others = Counter(
            v.constraint for v in check_schedule(schedule) if v.constraint != "due date"
        )
        results[method] = metrics
        print(
            f"{method:<10} {elapsed:7.1f} {100 * metrics.gantry_utilisation:6.1f} "
            f"{metrics.mean_waiting_working_days:7.2f} {metrics.max_waiting_working_days:6d} "
            f"{metrics.late_course_count:5d} {metrics.sessions_outside_usual_window:8d}  "
            f"{dict(others) or 'none'}"
        )
    baseline = results["first-fit"].mean_waiting_working_days
    solved = results["cp-sat"].mean_waiting_working_days
    ratio = solved / baseline if baseline else float("nan")
    print(f"waiting ratio cp-sat / first-fit: {ratio:.2f} (aim: at most 0.50)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=SolverOptions().time_limit_s)
    parser.add_argument("--network-time-limit", type=float, default=15.0)
    parser.add_argument("--network-gantries", type=int, default=10)
    parser.add_argument("--skip-network", action="store_true")
    args = parser.parse_args()
    run(
        "Year of one gantry",
        generate_year(seed=args.seed),
        SolverOptions(time_limit_s=args.time_limit, allow_late=True),
    )
    if not args.skip_network:
        run(
            "Network year",
            generate_year(seed=args.seed, gantry_count=args.network_gantries),
            SolverOptions(time_limit_s=args.network_time_limit, allow_late=True),
        )


if __name__ == "__main__":
    main()
