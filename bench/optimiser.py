"""Benchmark: the spot-weight optimiser's L-BFGS-B, protonpath's own against SciPy's, in one
process on the same dose matrix.

Usage::

    flock /tmp/bench.lock .venv/bin/python bench/optimiser.py [--phantom tg119|box]
        [--grid-mm 5] [--repeats 3] [--memory 10] [--iterations 500]

Needs the pyRadPlan run that ``bench/planning.py`` saved in ``.cache/bench`` for the same case
(its spots, dose grid and final objective).  For each optimiser (``optimise_weights(method=)``)
it times, best of ``--repeats``, from zero weights as ``bench/planning.py`` does:

* to pyRadPlan's final objective (``stop_below``), at most ``--iterations`` iterations;
* a fixed ``--iterations`` iterations (no convergence stop: ``tolerance=1e-12``);

and prints iterations, evaluations, the objective reached, the seconds spent in the objective's
passes over the matrix and the rest (the optimiser's own work), and SciPy's time over ours.
With several ``--memory`` values the own optimiser runs once per value.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantom", default="tg119", choices=("tg119", "box"))
    parser.add_argument("--grid-mm", default="5")
    parser.add_argument("--gantry", default="0,90")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--memory", default="10", help="pairs of the own optimiser, e.g. 5,10")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(var, None)


    import planning as bench_planning
    from protonpath.planning import matrad_io, optimise
    from protonpath.planning.warmup import warm_up

    out = ROOT / ".cache" / "bench"
    stem = "TG119" if args.phantom == "tg119" else "box_phantom"
    case = f"{stem}_g{args.gantry.replace(',', '_')}_grid{args.grid_mm}"
    npz, theirs_json = out / f"pyradplan_{case}.npz", out / f"pyradplan_{case}.json"
    if not npz.exists() or not theirs_json.exists():
        # pyRadPlan's run for this case is made (and checked) by bench/planning.py
        print(f"{npz.name} missing: running bench/planning.py for this case first", flush=True)
        made = subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "planning.py"),
                "--phantom",
                args.phantom,
                "--grid-mm",
                args.grid_mm,
                "--gantry",
                args.gantry,
            ],
            check=False,
        )
        if made.returncode or not npz.exists():
            raise SystemExit(f"bench/planning.py failed for this case ({npz} missing)")
    theirs = json.loads(theirs_json.read_text())
    goal = float(theirs["objective"])
    machine = matrad_io.load_pyradplan_generic_proton_machine()
    warm_up(machine)
    dm, phantom, rows, *_ = bench_planning.protonpath_case(
        str(npz), str(out / f"{stem}.mat"), machine
    )
    print(f"CPU: {bench_planning.cpu_model()}; load average {os.getloadavg()}")
    print(
        f"{stem}, {args.grid_mm} mm: {dm.n_spots} spots, {dm.matrix.shape[0]} rows, "
        f"pyRadPlan's objective {goal:.3f} after {theirs['iterations']} iterations"
    )

    timer = {"s": 0.0}
    plain_call = optimise._Problem.__call__

    def timed_call(self, w):
        t = time.perf_counter()
        try:
            return plain_call(self, w)
        finally:
            timer["s"] += time.perf_counter() - t

    optimise._Problem.__call__ = timed_call

    def run(method, memory, **kwargs):
        best = None
        for _ in range(args.repeats):
            timer["s"] = 0.0
            t = time.perf_counter()
            res = bench_planning.optimise_as_bench(
                dm, phantom, rows, args.iterations, method=method, memory=memory, **kwargs
            )
            wall = time.perf_counter() - t
            if best is None or wall < best[0]:
                best = (wall, timer["s"], res)
        return best

    failed = False
    variants = [("scipy", 10)] + [("lbfgsb", int(m)) for m in args.memory.split(",")]
    for label, kwargs in (("to pyRadPlan's objective", {"stop_below": goal}), ("fixed", {})):
        print(f"\n{label} (best of {args.repeats}, at most {args.iterations} iterations):")
        rows_out = []
        for method, memory in variants:
            wall, in_objective, res = run(method, memory, **kwargs)
            rows_out.append((method, memory, wall, res.objective))
            print(
                f"  {method:6s} m={memory:2d}: {wall:6.3f} s, {res.iterations:4d} iterations, "
                f"{res.evaluations:4d} evaluations, objective {res.objective:9.3f}; "
                f"objective passes {in_objective:.3f} s, the rest {wall - in_objective:.3f} s "
                f"({1e3 * (wall - in_objective) / max(res.iterations, 1):.2f} ms/iteration)"
            )
        # a ratio only between runs that reached the same plan quality
        scipy_wall, scipy_objective = rows_out[0][2], rows_out[0][3]
        for _, memory, wall, objective in rows_out[1:]:
            if "stop_below" in kwargs:
                same = max(objective, scipy_objective) <= goal * (1 + 1e-3)
                what = f"both at pyRadPlan's objective {goal:.3f} (0.1 %)"
            else:
                same = abs(objective - scipy_objective) <= 0.01 * scipy_objective
                what = "objectives within 1 % of each other"
            if not same:
                print(f"  m={memory}: not {what}; no ratio printed")
                failed = True
                continue
            print(f"  SciPy / own (m={memory}): {scipy_wall / wall:.2f}x ({what})")
    print(f"load average after: {os.getloadavg()}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
