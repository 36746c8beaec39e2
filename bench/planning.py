"""Benchmark: protonpath's PBS engine against pyRadPlan on the TG119 phantom.

Usage::

    .venv/bin/python bench/planning.py [--gantry 0,90] [--grid-mm 5] [--threads 2]

What it does, in one command:

1. makes sure pyRadPlan runs in its own virtual environment (``.cache/pyradplan-venv``):
   ``pip install --no-deps pyradplan`` plus its core dependencies (pydantic 2.11);
2. runs pyRadPlan in a subprocess on TG119 (proton "Generic" machine, the phantom's own
   objectives, its default 5 mm dose grid, L-BFGS-B with its defaults) and saves its spots,
   optimised weights, dose and timings;
3. runs protonpath in another subprocess on the same case: same CT and HU table, same
   machine data (matRad's generic proton tables read into a protonpath ``Machine``), same
   spots and dose grid, same objectives and same start (zero weights).  The optimisation is
   timed twice:

   * at equal plan quality (the ratios below): protonpath's L-BFGS-B stops as soon as its
     objective is at or below pyRadPlan's final one (capped at pyRadPlan's iteration count).
     Both objectives are the same matRad definitions, each scored on its own dose model;
   * at equal work: as many iterations as pyRadPlan ran (its default cap is 500, which it
     reaches on this case), reported with the objective it reaches;
4. prints the dose-matrix time, optimisation time, peak memory (each pyRadPlan / protonpath),
   and the gamma pass rate (2 %/2 mm, global, 10 % threshold) of protonpath's dose against
   pyRadPlan's for pyRadPlan's optimised weights.

Both sides run with ``--threads`` threads (OMP/MKL/OpenBLAS/numba).  Timings exclude Python
start-up and imports; numba's compiled kernels are cached on disk, and a first run that has to
compile them is reported separately (``jit warm-up``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
VENV = CACHE / "pyradplan-venv"
WHEELS = CACHE / "wheels"
PYRADPLAN_DEPS = [
    "numpy>=2.0,<2.4",
    "scipy>=1.13",
    "array_api_compat",
    "array_api_strict",
    "array_api_extra",
    "pymatreader>=1.0",
    "h5py>=3.11",
    "regex",
    "pydicom>=2.4.4",
    "matplotlib>=3.9",
    "pydantic>=2.11,<2.12",
    "pydantic-settings>=2,<3",
    "numpydantic>=1.6.9",
    "SimpleITK>=2.4",
    "tqdm",
    "pint>=0.24",
    "jinja2",
]

PYRADPLAN_WORKER = textwrap.dedent(
    r"""
    import json, resource, sys, time
    import numpy as np
    out_path, gantry = sys.argv[1], [float(g) for g in sys.argv[2].split(",")]
    grid_mm = float(sys.argv[3])
    import logging
    logging.disable(logging.WARNING)
    import warnings
    warnings.filterwarnings("ignore")
    from importlib import resources
    import SimpleITK as sitk
    from pyRadPlan import load_patient, IonPlan, generate_stf, calc_dose_influence, fluence_optimization
    from pyRadPlan.ct import default_hlut
    import pyRadPlan.optimization.solvers._scipy_solver as solver_mod

    calls = {}
    _minimize = solver_mod.minimize
    def counting_minimize(*a, **k):
        res = _minimize(*a, **k)
        calls["nit"] = int(getattr(res, "nit", -1)); calls["nfev"] = int(getattr(res, "nfev", -1))
        calls["fun"] = float(res.fun)
        return res
    solver_mod.minimize = counting_minimize

    ct, cst = load_patient(resources.files("pyRadPlan.data.phantoms").joinpath("TG119.mat"))
    pln = IonPlan(radiation_mode="protons", machine="Generic")
    pln.prop_stf = {"gantry_angles": gantry, "couch_angles": [0.0] * len(gantry)}
    pln.prop_dose_calc = {"dose_grid": {"resolution": {"x": grid_mm, "y": grid_mm, "z": grid_mm}}}
    t = time.perf_counter(); stf = generate_stf(ct, cst, pln); t_stf = time.perf_counter() - t
    t = time.perf_counter(); c = time.process_time()
    dij = calc_dose_influence(ct, cst, stf, pln)
    t_dij = time.perf_counter() - t; c_dij = time.process_time() - c
    t = time.perf_counter(); c = time.process_time()
    w = np.asarray(fluence_optimization(ct, cst, stf, dij, pln))
    t_opt = time.perf_counter() - t; c_opt = time.process_time() - c
    dose = sitk.GetArrayFromImage(dij.compute_result_dose_grid(w)["physical_dose"])
    beam_i, energy, ray_pos, iso = [], [], [], []
    for b, beam in enumerate(stf.beams):
        for ray in beam.rays:
            for spot in ray.beamlets:
                beam_i.append(b); energy.append(spot.energy); ray_pos.append(np.asarray(ray.ray_pos))
        iso.append(np.asarray(beam.iso_center))
    g = dij.dose_grid
    np.savez(out_path, beam=np.array(beam_i), energy=np.array(energy), ray_pos=np.array(ray_pos),
             iso=np.array(iso), gantry=np.array(gantry), weights=w, dose=dose,
             grid_origin=np.asarray(g.origin, float),
             grid_spacing=np.array([g.resolution["x"], g.resolution["y"], g.resolution["z"]], float),
             grid_shape=np.array(dose.shape), hlut=default_hlut(), nnz=dij.physical_dose.flat[0].nnz)
    print(json.dumps({"stf_s": t_stf, "dose_matrix_s": t_dij, "optimisation_s": t_opt,
                      "dose_matrix_cpu_s": c_dij, "optimisation_cpu_s": c_opt,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "spots": len(w), "nnz": int(dij.physical_dose.flat[0].nnz),
                      "iterations": calls.get("nit"), "evaluations": calls.get("nfev"),
                      "objective": calls.get("fun")}))
    """
)


def ensure_pyradplan_venv() -> Path:
    """Create ``.cache/pyradplan-venv`` with pyRadPlan and its core dependencies if needed."""
    python = VENV / "bin" / "python"
    check = [str(python), "-c", "import pyRadPlan, SimpleITK, pydantic_settings"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print("installing pyRadPlan in", VENV, "(once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    wheels = sorted(WHEELS.glob("pyradplan-*.whl"))
    target = str(wheels[-1]) if wheels else "pyradplan"
    subprocess.run([*pip, "--no-deps", target], check=True)
    subprocess.run([*pip, *PYRADPLAN_DEPS], check=True)
    subprocess.run(check, check=True)
    return python


def thread_env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    # OpenMP threads that sleep as soon as a parallel loop ends: spinning ones take the core
    # the main thread needs between two parallel products, and numba's own work queue wakes
    # its threads more slowly (on 2 cores the optimiser ran 20-40 % longer with either)
    env.setdefault("NUMBA_THREADING_LAYER", "omp")
    env.setdefault("OMP_WAIT_POLICY", "passive")
    return env


def run_json(cmd, env) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{cmd[1]} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def protonpath_worker(npz_path: str, iterations: int, stop_below: float) -> None:
    """Our side: same spots, grid, machine data and objectives as the pyRadPlan run."""
    import resource

    import numpy as np

    from protonpath.planning import ct as ctm
    from protonpath.planning import dose, gamma, matrad_io, optimise, raytrace, spots, structures

    ref = np.load(npz_path)
    phantom = matrad_io.load_tg119()
    machine = matrad_io.load_pyradplan_generic_proton_machine()
    hlut = ref["hlut"]
    calibration = ctm.HuCalibration(hlut[:, 0], hlut[:, 1], "pyRadPlan default HLUT")
    shape = tuple(int(v) for v in ref["grid_shape"])
    dose_grid = ctm.Grid(shape, ref["grid_origin"], ref["grid_spacing"])
    beams = [raytrace.Beam(float(g), 0.0, ref["iso"][i]) for i, g in enumerate(ref["gantry"])]
    frames = [raytrace.beam_frame(b) for b in beams]
    beam_idx = ref["beam"]
    u = np.array([ref["ray_pos"][k] @ frames[b].u for k, b in enumerate(beam_idx)])
    v = np.array([ref["ray_pos"][k] @ frames[b].v for k, b in enumerate(beam_idx)])
    plan_spots = spots.spots_from_arrays(machine, beam_idx, ref["energy"], u, v)

    t0 = time.perf_counter()
    c0 = time.process_time()
    spr = ctm.hu_to_spr(phantom.ct.hu, calibration)
    on_dose = [
        structures.structure_on_grid(s, phantom.ct.grid, dose_grid) for s in phantom.structures
    ]
    interest = np.zeros(dose_grid.shape, dtype=bool)
    for s in on_dose:
        interest |= s.mask
    dm = dose.compute_dose_matrix(
        spr, phantom.ct.grid, dose_grid, interest, beams, plan_spots, machine
    )
    t_dij = time.perf_counter() - t0
    c_dij = time.process_time() - c0

    rows = {
        k: dm.rows_of(m) for k, m in structures.resolve_overlaps(on_dose, phantom.priority).items()
    }

    def optimise_timed(**kwargs):
        t0 = time.perf_counter()
        c0 = time.process_time()
        result = optimise.optimise_weights(
            dm,
            phantom.objectives,
            rows,
            initial=np.zeros(dm.n_spots),
            max_iterations=iterations,
            tolerance=1e-12,  # no convergence stop before pyRadPlan's iteration count
            **kwargs,
        )
        return result, time.perf_counter() - t0, time.process_time() - c0

    result, t_opt, c_opt = optimise_timed(stop_below=stop_below)
    same_work, t_same_work, _ = optimise_timed()

    ours_with_their_weights = dm.dose_cube(ref["weights"])
    theirs = ref["dose"]
    g = gamma.gamma_index(theirs, ours_with_their_weights, dose_grid.spacing_mm, 2.0, 2.0, 10.0)
    problem = optimise._Problem(dm, phantom.objectives, rows)
    their_objective_in_our_model, _ = problem(ref["weights"])
    target = next(s for s in on_dose if s.role == structures.TARGET)
    print(
        json.dumps(
            {
                "dose_matrix_s": t_dij,
                "optimisation_s": t_opt,
                "dose_matrix_cpu_s": c_dij,
                "optimisation_cpu_s": c_opt,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "nnz": int(dm.matrix.nnz),
                "iterations": result.iterations,
                "same_work_s": t_same_work,
                "same_work_iterations": same_work.iterations,
                "same_work_objective": same_work.objective,
                "evaluations": result.evaluations,
                "objective": result.objective,
                "objective_of_pyradplan_weights": float(their_objective_in_our_model),
                "gamma_2_2": gamma.gamma_pass_rate(g),
                "max_dose_diff_percent": float(
                    np.abs(ours_with_their_weights - theirs).max() / theirs.max() * 100
                ),
                "target_mean_ours_gy": float(ours_with_their_weights[target.mask].mean()),
                "target_mean_pyradplan_gy": float(theirs[target.mask].mean()),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gantry", default="0,90")
    parser.add_argument("--grid-mm", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--reuse-pyradplan",
        action="store_true",
        help="reuse the last pyRadPlan result in .cache/bench (same case) instead of running it",
    )
    parser.add_argument("--ours", help=argparse.SUPPRESS)
    parser.add_argument("--iterations", type=int, default=500, help=argparse.SUPPRESS)
    parser.add_argument("--stop-below", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours:
        protonpath_worker(args.ours, args.iterations, args.stop_below)
        return

    env = thread_env(args.threads)
    python = ensure_pyradplan_venv()
    out = CACHE / "bench"
    out.mkdir(parents=True, exist_ok=True)
    case = f"g{args.gantry.replace(',', '_')}_grid{args.grid_mm:g}"
    npz = str(out / f"pyradplan_{case}.npz")
    theirs_json = out / f"pyradplan_{case}.json"
    print(
        f"TG119, protons, gantry {args.gantry}, dose grid {args.grid_mm:g} mm, "
        f"{args.threads} threads",
        flush=True,
    )
    if args.reuse_pyradplan and theirs_json.exists() and Path(npz).exists():
        theirs = json.loads(theirs_json.read_text())
        print("pyRadPlan: reusing", npz)
    else:
        worker = out / "pyradplan_worker.py"
        worker.write_text(PYRADPLAN_WORKER)
        t = time.perf_counter()
        theirs = run_json([str(python), str(worker), npz, args.gantry, str(args.grid_mm)], env)
        theirs_json.write_text(json.dumps(theirs))
        print(f"pyRadPlan run: {time.perf_counter() - t:.1f} s wall", flush=True)
    if True:
        iterations = int(theirs.get("iterations") or 500)
        ours_cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--ours",
            npz,
            "--iterations",
            str(iterations),
            "--stop-below",
            repr(float(theirs["objective"])),
        ]
        t = time.perf_counter()
        first = run_json(ours_cmd, env)
        first_wall = time.perf_counter() - t
        t = time.perf_counter()
        ours = run_json(ours_cmd, env)  # numba kernels now cached on disk
        print(
            f"protonpath run: {time.perf_counter() - t:.1f} s wall "
            f"(first run incl. jit warm-up: {first_wall:.1f} s)",
            flush=True,
        )

    def ratio(key):
        return theirs[key] / ours[key]

    total_theirs = theirs["dose_matrix_s"] + theirs["optimisation_s"]
    total_ours = ours["dose_matrix_s"] + ours["optimisation_s"]
    print()
    print(f"{'':28s}{'pyRadPlan':>12s}{'protonpath':>12s}{'ratio':>9s}")
    rows = [
        ("dose-matrix time (s)", "dose_matrix_s"),
        ("optimisation time (s)", "optimisation_s"),
        ("dose-matrix CPU time (s)", "dose_matrix_cpu_s"),
        ("optimisation CPU time (s)", "optimisation_cpu_s"),
        ("peak memory (MB)", "peak_rss_mb"),
    ]
    for label, key in rows:
        if key not in theirs or key not in ours:
            continue
        print(f"{label:28s}{theirs[key]:12.2f}{ours[key]:12.2f}{ratio(key):8.1f}x")
    print(
        f"{'overall time (s)':28s}{total_theirs:12.2f}{total_ours:12.2f}"
        f"{total_theirs / total_ours:8.1f}x"
    )
    print(f"{'spots':28s}{theirs['spots']:12d}{theirs['spots']:12d}")
    print(f"{'dose-matrix non-zeros':28s}{theirs['nnz']:12d}{ours['nnz']:12d}")
    print(f"{'optimiser iterations':28s}{theirs['iterations']:12d}{ours['iterations']:12d}")
    print(f"{'final objective':28s}{theirs['objective']:12.2f}{ours['objective']:12.2f}")
    print(
        f"(protonpath stopped at pyRadPlan's objective; with as many iterations as pyRadPlan, "
        f"{ours['same_work_iterations']}, it reaches {ours['same_work_objective']:.2f} in "
        f"{ours['same_work_s']:.2f} s: {theirs['optimisation_s'] / ours['same_work_s']:.1f}x)"
    )
    print(
        f"(pyRadPlan's weights scored by protonpath's dose model: "
        f"{ours['objective_of_pyradplan_weights']:.2f})"
    )
    print(
        f"gamma pass rate 2%/2mm (protonpath vs pyRadPlan, same weights): "
        f"{100 * ours['gamma_2_2']:.1f} %"
    )
    print(
        f"max dose difference: {ours['max_dose_diff_percent']:.1f} % of max; target mean "
        f"{ours['target_mean_ours_gy']:.2f} Gy vs {ours['target_mean_pyradplan_gy']:.2f} Gy"
    )
    print(
        f"first protonpath run, including numba compilation: dose matrix "
        f"{first['dose_matrix_s']:.2f} s"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
