"""A robust PBS plan: the nominal plan's steps, then scenario matrices, robust optimisation and
the robustness evaluation of both plans.

:func:`plan_robust` runs :func:`protonpath.planning.pipeline.plan_pbs` first (its spots, dose
grid and nominally optimised weights, the robust optimisation's start and the plan it is
compared with), keeps the matrix rows objectives act on, computes every scenario's matrix on
them (:func:`protonpath.planning.scenarios.scenario_matrices`), optimises the robust objectives
(:func:`protonpath.planning.robust.optimise_robust`) and evaluates both plans under the
scenarios (:func:`protonpath.planning.robustness.evaluate_robustness`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from protonpath.planning.blocks import BlockRows
from protonpath.planning.ct import CT, HuCalibration, hu_to_spr
from protonpath.planning.deliverability import DeliverabilityResult
from protonpath.planning.dose import DoseMatrix
from protonpath.planning.dvh import cumulative_dvh, dose_statistics
from protonpath.planning.machine import Machine
from protonpath.planning.optimise import SQUARED_OVERDOSE
from protonpath.planning.pipeline import PlanResult, PlanSettings, Progress, plan_pbs
from protonpath.planning.raytrace import Beam
from protonpath.planning.robust import (
    NOMINAL,
    SMOOTH_MAX,
    RobustObjective,
    RobustOptimisationResult,
    as_robust,
    optimise_robust,
)
from protonpath.planning.robustness import RobustnessEvaluation, evaluate_robustness
from protonpath.planning.scenarios import ScenarioMatrices, ScenarioSet, scenario_matrices
from protonpath.planning.spots import Spots
from protonpath.planning.structures import EXTERNAL, TARGET, Structure, resolve_overlaps


@dataclass(frozen=True)
class RobustSettings:
    """Choices of the robust optimisation.

    ``overdose_margin``: rows of an overdose objective on an external contour are kept where
    the nominal plan's dose, maximised over the setup shift's neighbourhood, reaches this
    fraction of the limit (other structures keep all their rows).
    """

    method: str = SMOOTH_MAX
    max_iterations: int = 300
    tolerance: float = 1e-6
    overdose_margin: float = 0.5

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "max_iterations": self.max_iterations,
            "tolerance": self.tolerance,
            "overdose_margin": self.overdose_margin,
        }


@dataclass
class RobustPlanResult:
    """A robust plan, the nominal plan it started from, and both plans' evaluations."""

    nominal: PlanResult
    objectives: list  # RobustObjective
    scenarios: ScenarioSet
    settings: RobustSettings
    weights: np.ndarray
    dose_gy: np.ndarray  # nominal-scenario dose of the robust plan
    statistics: dict
    dvhs: list
    optimisation: RobustOptimisationResult
    matrices: ScenarioMatrices
    evaluation: RobustnessEvaluation
    nominal_evaluation: RobustnessEvaluation
    timings_s: dict = field(default_factory=dict)
    #: the minimum-MU step's report when the plan was given spot limits
    deliverability: DeliverabilityResult | None = None
    #: the lateral halo's dose correction per row of ``matrices`` (None with the single model)
    row_scale: np.ndarray | None = None

    def scenario_dose_cubes(self, weights: np.ndarray) -> list[np.ndarray]:
        """Every scenario's dose cube of ``weights``, with the halo correction, the nominal
        scenario's from the plan's own dose matrix."""
        return corrected_cubes(self.matrices, weights, self.row_scale, self.nominal.dose_matrix)


def halo_row_scale(core_rows: np.ndarray, halo_rows: np.ndarray) -> np.ndarray:
    """Dose correction factors ``halo / core`` per row of the scenario matrices (computed with
    the single-Gaussian model) from the nominal plan's doses with both models.

    The scenarios' matrices are computed with the core Gaussian only (a double-Gaussian matrix
    has about 8 times the non-zeros); scaling each row by this factor gives the halo's dose
    where the core dose is at least 1 % of its maximum, factors clipped to [0.5, 2]; below,
    rows are left as they are (the halo's low-dose tail is not reproduced there)."""
    core = np.asarray(core_rows, dtype=np.float64)
    halo = np.asarray(halo_rows, dtype=np.float64)
    scale = np.ones(len(core))
    top = float(core.max()) if len(core) else 0.0
    on = core >= 0.01 * top if top > 0 else np.zeros(len(core), dtype=bool)
    scale[on] = np.clip(halo[on] / core[on], 0.5, 2.0)
    return scale


def halo_corrected(cubes, scenarios, scale, nominal_dose) -> list[np.ndarray]:
    """Core-Gaussian scenario dose cubes with the halo's correction: each scaled by ``scale``
    (:func:`halo_row_scale`, on the cubes' voxels), the nominal scenario's replaced by the
    plan's own halo dose ``nominal_dose``."""
    return [
        nominal_dose if sc.is_nominal else c * scale for sc, c in zip(scenarios, cubes, strict=True)
    ]


def corrected_cubes(matrices: ScenarioMatrices, weights, row_scale, nominal_matrix):
    """The scenario matrices' dose cubes of ``weights``; with a halo ``row_scale``, corrected by
    :func:`halo_corrected` with the nominal dose from ``nominal_matrix`` (the plan's own)."""
    cubes = matrices.dose_cubes(weights)
    if row_scale is None:
        return cubes
    scale = np.ones(matrices.grid.n_voxels)
    scale[matrices.voxel_indices] = row_scale
    return halo_corrected(
        cubes,
        matrices.scenarios,
        scale.reshape(matrices.grid.shape),
        nominal_matrix.dose_cube(weights),
    )


def kept_voxels(
    structures: list[Structure],
    objectives: list[RobustObjective],
    nominal_dose: np.ndarray,
    spacing_mm: np.ndarray,
    setup_mm: float,
    margin: float,
) -> np.ndarray:
    """Dose-grid voxels the robust problem needs: every target and organ voxel, and the
    voxels of objectives on external contours (overdose ones only where the nominal dose,
    maximised over ``setup_mm`` around the voxel, reaches ``margin`` of the limit)."""
    keep = np.zeros(nominal_dose.shape, dtype=bool)
    by_name = {s.name: s for s in structures}
    for s in structures:
        if s.role != EXTERNAL:
            keep |= s.mask
    size = tuple(int(2 * np.ceil(setup_mm / sp) + 1) for sp in spacing_mm[::-1])
    spread = ndimage.maximum_filter(nominal_dose, size=size) if setup_mm > 0 else nominal_dose
    for ro in objectives:
        s = by_name[ro.objective.structure]
        if s.role != EXTERNAL:
            continue
        if ro.objective.kind == SQUARED_OVERDOSE:
            keep |= s.mask & (spread >= margin * ro.objective.dose_gy)
        else:
            keep |= s.mask
    return keep


def plan_robust(
    ct: CT,
    structures: list[Structure],
    beams: list[Beam],
    machine: Machine,
    calibration: HuCalibration,
    objectives,
    *,
    target: str,
    prescription_gy: float,
    scenarios: ScenarioSet,
    priority: list[str] | None = None,
    settings: PlanSettings | None = None,
    robust_settings: RobustSettings | None = None,
    progress: Progress | None = None,
    spot_limits: Callable[[Spots], tuple[np.ndarray, np.ndarray]] | None = None,
    drop_fraction: float = 0.5,
) -> RobustPlanResult:
    """Plan a PBS treatment robust to ``scenarios``.

    ``objectives`` are :class:`RobustObjective` (plain objectives are nominal); the nominal
    plan optimises the same objectives on the nominal scenario.  Other parameters as
    :func:`protonpath.planning.pipeline.plan_pbs`.

    With a double-Gaussian ``settings.lateral_model`` the nominal plan uses that model, the
    scenarios the core Gaussian corrected per voxel by :func:`halo_row_scale`.

    ``spot_limits`` (e.g. :func:`protonpath.planning.deliverability.minimum_weights_from_mu`)
    gives each spot's ``(minimum, maximum)`` weight: after the robust optimisation, spots
    below ``drop_fraction`` of their minimum are removed and the others re-optimised robustly
    within their limits (the two-stage method of
    :func:`~protonpath.planning.deliverability.enforce_minimum_weight`, on the robust
    objectives so that the plan stays robust).
    """
    robust_settings = robust_settings or RobustSettings()
    report = progress or (lambda stage, done, total: None)
    robust_objectives = as_robust(objectives)
    t0 = time.perf_counter()
    nominal = plan_pbs(
        ct,
        structures,
        beams,
        machine,
        calibration,
        [ro.objective for ro in robust_objectives],
        target=target,
        prescription_gy=prescription_gy,
        priority=priority,
        settings=settings,
        progress=progress,
    )
    settings = settings or PlanSettings()
    timings = {f"nominal {k}": v for k, v in nominal.timings_s.items()}

    t = time.perf_counter()
    spr = hu_to_spr(ct.hu, calibration)
    grid = nominal.dose_grid
    keep = kept_voxels(
        nominal.structures,
        robust_objectives,
        nominal.dose_gy,
        np.asarray(grid.spacing_mm),
        max(abs(v) for sc in scenarios for v in sc.shift_mm),
        robust_settings.overdose_margin,
    )
    has_row = np.isin(np.arange(grid.n_voxels), nominal.dose_matrix.voxel_indices).reshape(
        grid.shape
    )
    keep &= has_row
    # the scenarios need the rows of robust objectives and of the structures evaluated
    # (targets, organs); objectives on the nominal scenario only use the nominal matrix
    by_name = {s.name: s for s in nominal.structures}
    in_scenarios = np.zeros(grid.shape, dtype=bool)
    for s in nominal.structures:
        if s.role != EXTERNAL:
            in_scenarios |= s.mask
    for ro in robust_objectives:
        if ro.robustness != NOMINAL:
            in_scenarios |= by_name[ro.objective.structure].mask & keep
    in_scenarios &= has_row

    def nominal_on(mask):
        r = nominal.dose_matrix.rows_of(mask)
        return DoseMatrix(
            nominal.dose_matrix.matrix[r, :].tocsc(), nominal.dose_matrix.voxel_indices[r], grid
        )

    nominal_kept = nominal_on(keep)
    with_halo = settings.lateral_model != "single"
    matrices = scenario_matrices(
        spr,
        ct.grid,
        grid,
        in_scenarios,
        nominal.beams,
        nominal.spots,
        machine,
        scenarios,
        cut_level=settings.cut_level,
        # the plan's own matrix is the nominal scenario's, unless it has the halo (then the
        # nominal scenario is computed with the core like the others, for the correction)
        nominal=None if with_halo else nominal_on(in_scenarios),
        full_rows=nominal.dose_matrix.matrix.shape[0],
        progress=lambda done, total: report("scenario matrices", done, total),
    )
    row_scale = None
    if with_halo:
        core = matrices.doses(nominal.weights)[0]  # the first scenario is the nominal one
        row_scale = halo_row_scale(core, nominal.dose_gy.ravel()[matrices.voxel_indices])
    timings["scenario matrices"] = time.perf_counter() - t

    t = time.perf_counter()
    resolved = resolve_overlaps(nominal.structures, priority)
    rows = {k: matrices.rows_of(v) for k, v in resolved.items()}
    nominal_blocks = BlockRows.from_matrix(nominal_kept.matrix)
    matrices.memory["nominal_rows"] = int(nominal_kept.matrix.shape[0])
    matrices.memory["nominal_blocks_bytes"] = int(
        nominal_blocks.block_ptr.nbytes
        + nominal_blocks.first_col.nbytes
        + nominal_blocks.values.nbytes
    )
    nominal_rows = {k: nominal_kept.rows_of(v) for k, v in resolved.items()}
    report("robust optimisation", 0, robust_settings.max_iterations)
    optimise = functools.partial(
        optimise_robust,
        matrices,
        robust_objectives,
        rows,
        max_iterations=robust_settings.max_iterations,
        tolerance=robust_settings.tolerance,
        method=robust_settings.method,
        nominal=nominal_blocks,
        nominal_rows=nominal_rows,
        row_scale=row_scale,
    )
    result = optimise(
        initial=nominal.weights,
        callback=lambda it: report("robust optimisation", it, robust_settings.max_iterations),
    )
    report("robust optimisation", robust_settings.max_iterations, robust_settings.max_iterations)
    timings["robust optimisation"] = time.perf_counter() - t

    deliverability = None
    if spot_limits is not None:
        t = time.perf_counter()
        lo, hi = (np.asarray(v, dtype=float) for v in spot_limits(nominal.spots))
        if np.any(lo <= 0) or np.any(hi < lo):
            raise ValueError("spot limits need 0 < minimum <= maximum")
        w = result.weights
        keep = w >= drop_fraction * lo
        report("minimum MU", 0, 1)
        bounded = optimise(initial=w, lower=np.where(keep, lo, 0.0), upper=np.where(keep, hi, 0.0))
        report("minimum MU", 1, 1)
        deliverability = DeliverabilityResult(
            bounded.weights,
            int(np.count_nonzero((w > 0) & ~keep)),
            int(np.count_nonzero(keep & (w < lo))),
            int(np.count_nonzero(w > 0)),
            int(np.count_nonzero(bounded.weights)),
            float(result.objective),
            float(bounded.objective),
            int(bounded.iterations),
        )
        result = bounded
        timings["minimum MU"] = time.perf_counter() - t

    t = time.perf_counter()
    dose = nominal.dose_matrix.dose_cube(result.weights)
    stats = {
        s.name: dose_statistics(dose, s.mask, prescription_gy if s.role == TARGET else None)
        for s in nominal.structures
    }
    dvhs = [cumulative_dvh(dose, s.mask, s.name) for s in nominal.structures]
    full = nominal.dose_matrix
    evaluation = evaluate_robustness(
        corrected_cubes(matrices, result.weights, row_scale, full),
        nominal.structures,
        scenarios,
        prescription_gy,
    )
    nominal_evaluation = evaluate_robustness(
        corrected_cubes(matrices, nominal.weights, row_scale, full),
        nominal.structures,
        scenarios,
        prescription_gy,
    )
    timings["evaluation"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return RobustPlanResult(
        nominal,
        robust_objectives,
        scenarios,
        robust_settings,
        result.weights,
        dose,
        stats,
        dvhs,
        result,
        matrices,
        evaluation,
        nominal_evaluation,
        timings,
        deliverability,
        row_scale,
    )
