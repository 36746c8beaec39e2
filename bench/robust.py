"""Benchmark: a 21-scenario robust PBS plan against the nominal plan (and OpenTPS 2.0).

Usage::

    .venv/bin/python bench/robust.py [--grid-mm 5] [--threads 2] [--iterations 150]

What it does, in one command (each side in its own subprocess, OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE unset for all of them):

1. **nominal**: TG119 (full CT, 2 beams at 0 and 90 deg, dose grid ``--grid-mm``), the
   phantom's objectives plus a squared-underdose objective at 98 % of the prescription, all on
   the nominal scenario; spots with margins widened for 3 mm / 3.5 %; time of the whole plan
   (ray tracing, spots, dose matrix, optimisation) and peak memory;
2. **robust**: the same plan made robust (:func:`protonpath.planning.robust_plan.plan_robust`,
   the underdose objective voxel-wise worst case over the 21 scenarios of
   :func:`protonpath.planning.scenarios.scenario_set`), timed from the CT to the optimised
   weights, the nominal plan it starts from included; peak memory and the scenario matrices'
   memory;
3. both plans' worst-case target D95 over the 21 scenarios; ratio robust time / nominal time
   (aim: at most 5);
4. **optimiser choice** on the box phantom of the tests (one beam, composite worst case on
   all objectives): L-BFGS-B on the smoothed maximum against SLSQP on the epigraph form, time
   and worst-case composite objective each reaches;
5. **OpenTPS 2.0** (opentps-core 2.0.0 in ``.cache/opentps-venv``): installed if missing and
   reported as run, or with the reason it cannot run here.

Timings exclude Python start-up and imports; numba's compiled kernels are cached on disk (a
warm-up run compiles them first).

Last measured (2026-12-01, Intel Xeon, 2 cores shared with other jobs, load 3-10): robust /
nominal plan time 4.8x wall, 4.1x CPU (45 s vs 9.4 s; scenario matrices 9.6 s, robust
optimisation 150 iterations 25 s); peak memory 788 vs 409 MB (21 x 1596 rows, 175 MiB of
float32 blocks); worst-case target D95 47.5 Gy (robust) vs 38.1 Gy (nominal plan), Rx 50 Gy.
Optimisers (box, composite worst case): L-BFGS-B on the smoothed maximum 3.35 in 1.5 s,
SLSQP epigraph 3.52 in 2.6 s (start 9.90).

Measured 2026-12-02 (AMD EPYC Zen 3, 2 cores under KVM shared with three other jobs, load
5.5-10; ``--grid-mm 9 --opentps-primaries 1e4 --opentps-spot-mm 7 --opentps-layer-mm 7``):
ours, robust plan 21.3 s wall / 4.9 s CPU (nominal plan 9.4 s / 2.0 s), 322 MB peak, 5695
spots; worst-case target D95 47.59 Gy (robust) vs 33.27 Gy (nominal plan). OpenTPS 2.0.0
(MCsquare's generic build: the Intel-dispatched ones refuse AMD processors), 3487 spots:
plan design 47-53 s, then about 4 s per beamlet of the nominal pass (72 beamlets logged in
299 s, under ``nice -n 10``), so about 4 h per pass and 84 h for the 21 passes at that pace:
stopped, no worst-case D95 to compare. With 1e3 primaries per beamlet it simulated faster
(buffered log: 182 beamlets logged within 44 s) but stays hours for 21 passes, with ten times
the Monte Carlo noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
OPENTPS_VENV = CACHE / "opentps-venv"
OPENTPS_VERSION = "2.0.0"
RX = 50.0


def bench_env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(var, None)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("NUMBA_THREADING_LAYER", "omp")  # OpenMP's default wait policy, as the worker
    return env


def run_json(cmd, env) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{' '.join(cmd[2:4])} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _tg119_case(grid_mm: float):
    import numpy as np

    from protonpath.planning import matrad_io
    from protonpath.planning.optimise import SQUARED_UNDERDOSE, Objective
    from protonpath.planning.pipeline import PlanSettings
    from protonpath.planning.raytrace import Beam
    from protonpath.planning.robust import NOMINAL, VOXEL_WORST_CASE, RobustObjective

    tg = matrad_io.load_tg119(matrad_io.find_pyradplan_wheel())
    target = next(s for s in tg.structures if s.name == "OuterTarget")
    iso = tg.ct.grid.points_mm(np.flatnonzero(target.mask)).mean(axis=0)
    beams = [Beam(g, 0.0, iso) for g in (0.0, 90.0)]
    settings = PlanSettings(
        dose_grid_mm=grid_mm,
        spot_spacing_mm=5.0,
        layer_spacing_mm=3.0,
        max_iterations=200,
        lateral_margin_mm=9.0,
        proximal_margin_mm=7.0,
        distal_margin_mm=7.0,
    )
    objectives = [RobustObjective(o, NOMINAL) for o in tg.objectives] + [
        RobustObjective(
            Objective("OuterTarget", SQUARED_UNDERDOSE, 0.98 * RX, 1000.0), VOXEL_WORST_CASE
        )
    ]
    return tg, beams, settings, objectives


def worker(side: str, grid_mm: float, iterations: int) -> None:
    import resource

    from protonpath.planning.resources import load_default_calibration, load_default_machine
    from protonpath.planning.robust_plan import RobustSettings, plan_robust
    from protonpath.planning.scenarios import scenario_set

    tg, beams, settings, objectives = _tg119_case(grid_mm)
    machine, calibration = load_default_machine(), load_default_calibration()
    out: dict = {}
    if side == "nominal":
        from protonpath.planning.pipeline import plan_pbs

        t = time.perf_counter()
        cpu = time.process_time()
        plan = plan_pbs(
            tg.ct,
            tg.structures,
            beams,
            machine,
            calibration,
            [ro.objective for ro in objectives],
            target="OuterTarget",
            prescription_gy=RX,
            priority=tg.priority,
            settings=settings,
        )
        out["time_s"] = time.perf_counter() - t
        out["cpu_s"] = time.process_time() - cpu
        out["timings_s"] = plan.timings_s
        out["spots"] = len(plan.spots)
        out["nominal_D95"] = plan.statistics["OuterTarget"]["D95"]
    else:
        t = time.perf_counter()
        cpu = time.process_time()
        r = plan_robust(
            tg.ct,
            tg.structures,
            beams,
            machine,
            calibration,
            objectives,
            target="OuterTarget",
            prescription_gy=RX,
            priority=tg.priority,
            scenarios=scenario_set(),
            settings=settings,
            robust_settings=RobustSettings(max_iterations=iterations),
        )
        total = time.perf_counter() - t
        out["time_s"] = total - r.timings_s["evaluation"]  # the plan, not its evaluation
        out["cpu_s"] = time.process_time() - cpu
        out["timings_s"] = r.timings_s
        out["spots"] = len(r.nominal.spots)
        out["memory"] = r.matrices.memory
        out["nominal_D95"] = r.statistics["OuterTarget"]["D95"]
        out["worst_D95_robust"] = r.evaluation.worst["OuterTarget"]["D95"]["value"]
        out["worst_D95_nominal_plan"] = r.nominal_evaluation.worst["OuterTarget"]["D95"]["value"]
        out["core_worst_mean_robust"] = r.evaluation.worst["Core"]["mean"]["value"]
        out["core_worst_mean_nominal_plan"] = r.nominal_evaluation.worst["Core"]["mean"]["value"]
        out["optimiser"] = r.optimisation.to_dict()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def optimiser_worker(iterations: int) -> None:
    """L-BFGS-B on the smoothed maximum against SLSQP on the epigraph (box phantom)."""
    import numpy as np

    from protonpath.planning.ct import CT, Grid, HuCalibration, hu_to_spr
    from protonpath.planning.optimise import SQUARED_DEVIATION, SQUARED_OVERDOSE, Objective
    from protonpath.planning.pipeline import PlanSettings, plan_pbs
    from protonpath.planning.raytrace import Beam
    from protonpath.planning.resources import load_default_machine
    from protonpath.planning.robust import (
        COMPOSITE_WORST_CASE,
        EPIGRAPH,
        SMOOTH_MAX,
        RobustObjective,
        optimise_robust,
    )
    from protonpath.planning.robust_plan import kept_voxels
    from protonpath.planning.scenarios import scenario_matrices, scenario_set
    from protonpath.planning.structures import EXTERNAL, OAR, TARGET, Structure, resolve_overlaps

    water = HuCalibration(np.array([-1000.0, 0.0, 1000.0]), np.array([0.0, 1.0, 2.0]))
    s = 4.0
    x = np.arange(-60 + s / 2, 60, s)
    y = np.arange(-10 + s / 2, 170, s)
    z = np.arange(-60 + s / 2, 60, s)
    grid = Grid((len(z), len(y), len(x)), (x[0], y[0], z[0]), (s, s, s))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    body = (np.abs(xx) < 50) & (np.abs(zz) < 50) & (yy >= 0) & (yy <= 160)
    ct = CT(np.where(body, 0.0, -1000.0).astype(np.float32), grid)
    structures = [
        Structure("PTV", (np.abs(xx) < 20) & (np.abs(zz) < 20) & (yy > 60) & (yy < 100), TARGET),
        Structure("OAR", (np.abs(xx) < 20) & (np.abs(zz) < 20) & (yy > 104) & (yy < 120), OAR),
        Structure("BODY", body, EXTERNAL),
    ]
    objectives = [
        RobustObjective(Objective("PTV", SQUARED_DEVIATION, 2.0, 1000.0), COMPOSITE_WORST_CASE),
        RobustObjective(Objective("OAR", SQUARED_OVERDOSE, 1.0, 100.0), COMPOSITE_WORST_CASE),
    ]
    machine = load_default_machine()
    beams = [Beam(0.0, 0.0, np.array([0.0, 80.0, 0.0]))]
    settings = PlanSettings(
        dose_grid_mm=4.0, spot_spacing_mm=8.0, layer_spacing_mm=5.0, max_iterations=100,
        lateral_margin_mm=9.0, proximal_margin_mm=7.0, distal_margin_mm=7.0,
    )  # fmt: skip
    plan = plan_pbs(
        ct, structures, beams, machine, water, [o.objective for o in objectives],
        target="PTV", prescription_gy=2.0, settings=settings,
    )  # fmt: skip
    scenarios = scenario_set()
    keep = kept_voxels(plan.structures, objectives, plan.dose_gy, grid.spacing_mm, 3.0, 0.5)
    matrices = scenario_matrices(
        hu_to_spr(ct.hu, water),
        ct.grid,
        plan.dose_grid,
        keep,
        beams,
        plan.spots,
        machine,
        scenarios,
    )
    rows = {k: matrices.rows_of(v) for k, v in resolve_overlaps(plan.structures).items()}
    out = {"spots": len(plan.spots)}
    for method in (SMOOTH_MAX, EPIGRAPH):
        t = time.perf_counter()
        r = optimise_robust(
            matrices, objectives, rows, initial=plan.weights, method=method,
            max_iterations=iterations,
        )  # fmt: skip
        out[method] = {
            "time_s": time.perf_counter() - t,
            "worst_composite": r.worst_composite,
            "iterations": r.iterations,
            "evaluations": r.evaluations,
            "message": r.message,
        }
    out["start_worst_composite"] = float(
        optimise_robust(matrices, objectives, rows, initial=plan.weights, max_iterations=1).history[
            0
        ][1]
    )
    print(json.dumps(out))


OPENTPS_WORKER = r"""
import json, os, resource, sys, time
import numpy as np
import logging
logging.disable(logging.WARNING)
npz, out_json, work, grid_mm, primaries, maxiter, spot_mm, layer_mm = sys.argv[1:9]
grid_mm, primaries, maxiter = float(grid_mm), float(primaries), int(maxiter)
spot_mm, layer_mm = float(spot_mm), float(layer_mm)
progress = {"stage": "import"}
def note(**kw):
    progress.update(kw)
    with open(out_json, "w") as f:
        json.dump(progress, f)
t0 = time.perf_counter()
from opentps.core.data.images import CTImage, ROIMask
from opentps.core.data.plan._protonPlanDesign import ProtonPlanDesign
from opentps.core.data.plan import RobustnessProton, FidObjective
from opentps.core.data import Patient
from opentps.core.io import mcsquareIO
from opentps.core.io.scannerReader import readScanner
from opentps.core.processing.doseCalculation.doseCalculationConfig import DoseCalculationConfig
from opentps.core.processing.doseCalculation.protons.mcsquareDoseCalculator import MCsquareDoseCalculator
from opentps.core.processing.planOptimization.planOptimization import IntensityModulationOptimizer
# the wheel's MCsquare launcher has CRLF line ends, and "sh MCsquare" fails on them (dash:
# "Syntax error: end of file unexpected"): start the build the launcher would choose directly
# (the AVX-512 one on this Intel Xeon; the generic one on AMD processors)
import subprocess
_popen = subprocess.Popen
def _build():
    cpu = open("/proc/cpuinfo").read()
    if "AuthenticAMD" in cpu:  # the Intel-dispatched builds refuse AMD processors
        return "MCsquare_linux"
    for flag in ("avx512", "avx2", "avx", "sse4"):
        if flag in cpu:
            return "MCsquare_linux_" + flag
    return "MCsquare_linux"
def _popen_mcsquare(args, *a, cwd=None, **kw):
    if list(args[:1]) == ["sh"] and args[1] in ("MCsquare", "MCsquare_opti"):
        name = _build().replace("MCsquare", args[1], 1)
        env = dict(os.environ, MCsquare_Materials_Dir=os.path.join(cwd, "Materials"))
        os.chmod(os.path.join(cwd, name), 0o755)  # the wheel does not keep execute bits
        note(mcsquare_build=name)
        log = open(os.path.join(work, "mcsquare.log"), "a")
        return _popen([os.path.join(cwd, name)], cwd=cwd, env=env, stdout=log, stderr=log)
    return _popen(args, *a, cwd=cwd, **kw)
subprocess.Popen = _popen_mcsquare
d = np.load(npz)
patient = Patient()
origin, spacing = [float(v) for v in d["origin"]], [float(v) for v in d["spacing"]]
ct = CTImage(imageArray=np.ascontiguousarray(d["hu"].transpose(2, 1, 0)), origin=origin,
             spacing=spacing, patient=patient)
def roi(name):
    return ROIMask(imageArray=np.ascontiguousarray(d[name].transpose(2, 1, 0)), name=name,
                   origin=origin, spacing=spacing, patient=patient)
target, core = roi("OuterTarget"), roi("Core")
calibration = readScanner(DoseCalculationConfig().scannerFolder)
mc2 = MCsquareDoseCalculator()
mc2.beamModel = mcsquareIO.readBDL(DoseCalculationConfig().bdlFile)
mc2.nbPrimaries = primaries
# MCsquare's files go to ~/openTPS_workspace/Simulations/<name>: one name per run, so that
# runs on the same machine (other benchmarks) do not overwrite each other's inputs
mc2.simulationFolderName = "MCsquare_" + os.path.basename(os.path.dirname(work))
mc2.ctCalibration = calibration
design = ProtonPlanDesign()
design.ct = ct
design.gantryAngles = [0.0, 90.0]
design.beamNames = ["G0", "G90"]
design.couchAngles = [0.0, 0.0]
design.calibration = calibration
design.robustness = RobustnessProton()
design.robustness.setupSystematicError = [3.0, 3.0, 3.0]
design.robustness.setupRandomError = [0.0, 0.0, 0.0]
design.robustness.rangeSystematicError = 3.5
design.robustness.selectionStrategy = design.robustness.Strategies.REDUCED_SET
# opentps-core 2.0.0's MCsquare robust beamlets read robustness.Mode4D, which no class of
# the package defines (AttributeError): give it the "no 4D" value its code compares with
import enum
Mode4D = enum.Enum("Mode4D", ["Disabled", "MCsquareAccumulation", "MCsquareSystematic"])
design.robustness.Mode4D = Mode4D.Disabled
design.spotSpacing = spot_mm
design.layerSpacing = layer_mm
design.targetMargin = 5.0 + 3.0
design.defineTargetMaskAndPrescription(target=target, targetPrescription=50.0)
design.setScoringParameters(scoringSpacing=[grid_mm] * 3, adapt_gridSize_to_new_spacing=True)
plan = design.buildPlan()
note(stage="beamlets", spots=int(plan.numberOfSpots), setup_s=time.perf_counter() - t0)
t = time.perf_counter()
nominal, scenarios = mc2.computeRobustScenarioBeamlets(ct, plan, roi=[target, core], storePath=work)
plan.planDesign.beamlets = nominal
plan.planDesign.robustness.scenarios = scenarios
plan.planDesign.robustness.numScenarios = len(scenarios)
note(stage="optimisation", dose_matrix_s=time.perf_counter() - t, scenarios=len(scenarios) + 1,
     spot_spacing_mm=spot_mm, layer_spacing_mm=layer_mm, primaries_per_beamlet=primaries)
objectives = plan.planDesign.objectives
objectives.addFidObjective(target, FidObjective.Metrics.DMAX, 50.0, 1.0, robust=True)
objectives.addFidObjective(target, FidObjective.Metrics.DMIN, 50.0, 1.0, robust=True)
objectives.addFidObjective(core, FidObjective.Metrics.DMAX, 25.0, 0.3, robust=False)
t = time.perf_counter()
solver = IntensityModulationOptimizer(method="Scipy_L-BFGS-B", plan=plan, maxiter=maxiter)
dose_image, ps = solver.optimize()
note(stage="evaluation", optimisation_s=time.perf_counter() - t)
w = np.asarray(plan.spotMUs, dtype=float)
mask = None
d95 = []
for b in [nominal] + list(scenarios):
    m = b.toSparseMatrix()
    dose = np.asarray(m @ w).ravel()
    if mask is None:
        grid = b.doseGridSize
        from opentps.core.processing.imageProcessing.resampler3D import resampleImage3D
        tm = resampleImage3D(target, spacing=b.doseSpacing, gridSize=grid, origin=b.doseOrigin)
        mask = tm.imageArray.astype(bool).ravel(order="F")
    vals = np.sort(dose[mask])
    d95.append(float(vals[int(np.floor(0.05 * len(vals)))]))
scale = 50.0 / np.median(dose[mask]) if False else 1.0
note(stage="done", nominal_D95=d95[0], worst_D95=min(d95),
     peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
     + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""


def run_opentps(
    grid_mm: float,
    timeout_s: float,
    primaries: float,
    maxiter: int,
    spot_mm: float = 5.0,
    layer_mm: float = 5.0,
) -> dict:
    """OpenTPS' robust optimisation on TG119 (its own venv; MCsquare beamlets, 21 scenarios),
    stopped after ``timeout_s``: returns what it reached. ``primaries`` per beamlet,
    ``spot_mm`` and ``layer_mm`` its spot and layer spacing (MCsquare's time grows with
    primaries x spots: these are the knobs that make a run fit in a session)."""
    import numpy as np

    from protonpath.planning import matrad_io

    python = OPENTPS_VENV / "bin" / "python"
    # one folder per run (pid): the cache is shared by several checkouts of the project
    out = CACHE / "bench" / f"opentps_run_{os.getpid()}"
    out.mkdir(parents=True, exist_ok=True)
    tg = matrad_io.load_tg119(matrad_io.find_pyradplan_wheel())
    npz = out / "tg119_for_opentps.npz"
    masks = {s.name: s.mask for s in tg.structures if s.name in ("OuterTarget", "Core")}
    np.savez(npz, hu=tg.ct.hu, origin=tg.ct.grid.origin_mm, spacing=tg.ct.grid.spacing_mm, **masks)
    worker = out / "opentps_worker.py"
    worker.write_text(OPENTPS_WORKER)
    work = out / "opentps_work"
    work.mkdir(exist_ok=True)
    (work / "mcsquare.log").unlink(missing_ok=True)
    result = out / "opentps_result.json"
    result.unlink(missing_ok=True)
    cmd = [str(python), str(worker), str(npz), str(result), str(work), str(grid_mm),
           str(primaries), str(maxiter), str(spot_mm), str(layer_mm)]  # fmt: skip
    env = bench_env(2)
    t = time.perf_counter()
    started = time.time()
    # its own session: on time-out the worker and the MCsquare it started stop together
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
        tail = (stdout + stderr).strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        proc, tail = None, [f"stopped after {timeout_s:.0f} s"]
    wall = time.perf_counter() - t
    reached = json.loads(result.read_text()) if result.exists() else {"stage": "start"}
    log = work / "mcsquare.log"
    if log.exists():  # how far MCsquare got: beamlet passes started (nominal, then scenarios)
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if "beamlet" in ln]
        reached["mcsquare_passes_started"] = sum(" 1/" in ln for ln in lines)
        reached["mcsquare_last"] = lines[-1].strip() if lines else ""
        # MCsquare's output is block-buffered: the log holds the beamlets started by its last
        # write (its modification time), not those since
        done = sum(ln.startswith("Simulation of beamlet") for ln in lines)
        reached["beamlets_simulated"] = done
        if reached.get("stage") == "beamlets" and done and reached.get("spots"):
            # at the pace it had: every spot's beamlet in the nominal pass and 20 scenario passes
            per = (log.stat().st_mtime - started - reached["setup_s"]) / done
            reached["beamlet_s"] = per
            reached["estimated_beamlets_s_21_passes"] = per * reached["spots"] * 21
    npz.unlink(missing_ok=True)
    # the run's MCsquare folder (OpenTPS' default workspace; CT, binaries, beamlets: ~200 MB)
    shutil.rmtree(Path.home() / "openTPS_workspace" / "Simulations" / f"MCsquare_{out.name}",
                  ignore_errors=True)  # fmt: skip
    reached["wall_s"] = wall
    reached["returncode"] = None if proc is None else proc.returncode
    reached["tail"] = tail
    return reached


def opentps_status() -> str:
    """Install opentps-core in its own venv if missing; say whether its robust optimisation can
    run here."""
    python = OPENTPS_VENV / "bin" / "python"
    check = [str(python), "-c", "import opentps.core; print(opentps.core.__file__)"]
    if not (python.exists() and subprocess.run(check, capture_output=True).returncode == 0):
        print(f"installing opentps-core {OPENTPS_VERSION} in {OPENTPS_VENV} (once)", flush=True)
        made = subprocess.run(["python3.11", "-m", "venv", str(OPENTPS_VENV)])
        if made.returncode != 0:
            return "no Python 3.11 to make its venv (opentps-core 2.0.0 needs 3.11)"
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             f"opentps-core=={OPENTPS_VERSION}"],
            capture_output=True, text=True,
        )  # fmt: skip
        if pip.returncode != 0:
            return "pip could not install it: " + (pip.stderr.strip().splitlines() or ["?"])[-1]
    proc = subprocess.run(check, capture_output=True, text=True)
    if proc.returncode != 0:
        return "installed but does not import: " + proc.stderr.strip().splitlines()[-1]
    return "importable (" + proc.stdout.strip() + ")"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid-mm", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=150, help="robust iterations")
    parser.add_argument("--skip-opentps", action="store_true")
    parser.add_argument("--opentps-timeout", type=float, default=1800.0)
    parser.add_argument("--opentps-primaries", type=float, default=5e4, help="per beamlet")
    parser.add_argument("--opentps-spot-mm", type=float, default=5.0)
    parser.add_argument("--opentps-layer-mm", type=float, default=5.0)
    parser.add_argument("--only-opentps", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "optimisers":
        optimiser_worker(args.iterations)
        return
    if args.worker:
        worker(args.worker, args.grid_mm, args.iterations)
        return
    env = bench_env(args.threads)
    me = [sys.executable, str(Path(__file__).resolve()), "--grid-mm", str(args.grid_mm)]
    it = ["--iterations", str(args.iterations)]
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    print(f"TG119, 2 beams (0, 90 deg), {args.grid_mm:g} mm grid, {args.threads} threads, {cpu}")
    t = time.perf_counter()
    run_json([*me, "--worker", "nominal", *it], env)  # compiles numba's kernels if needed
    print(f"warm-up: {time.perf_counter() - t:.1f} s", flush=True)
    nominal = run_json([*me, "--worker", "nominal", *it], env)
    robust = run_json([*me, "--worker", "robust", *it], env)
    mem = robust["memory"]
    print()
    print(f"{'':34s}{'nominal':>12s}{'robust (21)':>13s}{'ratio':>8s}")
    print(
        f"{'plan time (s)':34s}{nominal['time_s']:12.1f}{robust['time_s']:13.1f}"
        f"{robust['time_s'] / nominal['time_s']:7.2f}x"
    )
    print(
        f"{'plan CPU time (s)':34s}{nominal['cpu_s']:12.1f}{robust['cpu_s']:13.1f}"
        f"{robust['cpu_s'] / nominal['cpu_s']:7.2f}x"
    )
    print(
        f"{'peak memory (MB)':34s}{nominal['peak_rss_mb']:12.0f}{robust['peak_rss_mb']:13.0f}"
        f"{robust['peak_rss_mb'] / nominal['peak_rss_mb']:7.2f}x"
    )
    print(
        f"{'worst-case target D95 (Gy, Rx 50)':34s}{robust['worst_D95_nominal_plan']:12.2f}"
        f"{robust['worst_D95_robust']:13.2f}"
    )
    print(
        f"{'worst-case Core mean (Gy)':34s}{robust['core_worst_mean_nominal_plan']:12.2f}"
        f"{robust['core_worst_mean_robust']:13.2f}"
    )
    print(f"{'nominal-scenario target D95 (Gy)':34s}{nominal['nominal_D95']:12.2f}"
          f"{robust['nominal_D95']:13.2f}")  # fmt: skip
    print(
        f"scenario matrices: {mem['scenarios']} x {mem['rows']} rows (of {mem['full_rows']}), "
        f"{mem['spots']} spots, {mem['blocks_bytes'] / 2**20:.0f} MiB float32 blocks "
        f"({mem['csr_float64_bytes'] / 2**20:.0f} MiB as float64 CSR)"
    )
    steps = {k: round(v, 1) for k, v in robust["timings_s"].items() if not k.startswith("nominal ")}
    print(f"robust steps (s): {steps}; optimiser: {robust['optimiser']}")
    print()
    opt = run_json([*me, "--worker", "optimisers", *it], env)
    print(f"optimiser choice, box phantom, composite worst case, {opt['spots']} spots, "
          f"start worst composite {opt['start_worst_composite']:.4g}")  # fmt: skip
    for method in ("lbfgsb_smooth_max", "slsqp_epigraph"):
        m = opt[method]
        print(
            f"  {method:20s} {m['time_s']:8.2f} s  worst composite {m['worst_composite']:.4g}  "
            f"({m['iterations']} iterations, {m['evaluations']} evaluations: {m['message']})"
        )
    if not args.skip_opentps:
        print()
        status = opentps_status()
        print(f"OpenTPS {OPENTPS_VERSION}: {status}", flush=True)
        if status.startswith("importable"):
            r = run_opentps(args.grid_mm, args.opentps_timeout, args.opentps_primaries, 50,
                            args.opentps_spot_mm, args.opentps_layer_mm)
            print(f"  OpenTPS robust optimisation (MCsquare beamlets, 21 scenarios): {r}")
            if r.get("stage") == "done":
                total = r["dose_matrix_s"] + r["optimisation_s"]
                print(
                    f"  time {total:.0f} s vs ours {robust['time_s']:.0f} s "
                    f"({total / robust['time_s']:.1f}x), peak memory {r['peak_rss_mb']:.0f} MB "
                    f"vs {robust['peak_rss_mb']:.0f} MB, worst-case D95 {r['worst_D95']:.2f} Gy "
                    f"vs {robust['worst_D95_robust']:.2f} Gy"
                )
            elif r.get("estimated_beamlets_s_21_passes"):
                est = r["estimated_beamlets_s_21_passes"]
                print(
                    f"  stopped in its beamlets, {r['beamlets_simulated']} of {r['spots']} logged "
                    f"(nominal pass), {r['beamlet_s']:.2f} s each: all 21 passes would take about "
                    f"{est / 3600:.1f} h at that pace, {est / robust['time_s']:.0f}x our robust "
                    f"plan's {robust['time_s']:.0f} s (no worst-case D95 to compare)"
                )


if __name__ == "__main__":
    main()
