"""A whole PBS plan from a CT, structures and beams: the steps in order.

stopping-power image -> water-equivalent depths per beam -> spots -> dose-influence matrix ->
optimised weights -> dose and its statistics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from protonpath.planning.ct import CT, Grid, HuCalibration, hu_to_spr
from protonpath.planning.dose import DoseMatrix, compute_dose_matrix
from protonpath.planning.dvh import Dvh, cumulative_dvh, dose_statistics
from protonpath.planning.machine import Machine
from protonpath.planning.optimise import (
    SQUARED_DEVIATION,
    SQUARED_OVERDOSE,
    Objective,
    OptimisationResult,
    optimise_single_field,
    optimise_weights,
)
from protonpath.planning.raytrace import Beam, BeamView, water_equivalent_depth
from protonpath.planning.spots import (
    LAYER_SPACING_FACTOR,
    MAX_LAYER_SPACING_MM,
    MIN_LAYER_SPACING_MM,
    Spots,
    concatenate_spots,
    place_spots,
)
from protonpath.planning.structures import TARGET, Structure, resolve_overlaps, structure_on_grid

#: Callback of the pipeline's progress: ``(stage, done, total)``.
Progress = Callable[[str, int, int], None]


LATERAL_MODELS = ("single", "halo", "halo-depth")


@dataclass(frozen=True)
class PlanSettings:
    """Choices of a plan (lengths in mm, doses in Gy)."""

    dose_grid_mm: float = 3.0
    spot_spacing_mm: float = 5.0
    lateral_margin_mm: float = 6.0
    #: Bragg peak spacing of the energy layers: a fixed spacing in mm, or "auto" (a step of
    #: layer_spacing_factor times each layer's W80, clamped; spots.select_energy_layers)
    layer_spacing_mm: float | str = 3.0
    layer_spacing_factor: float = LAYER_SPACING_FACTOR
    min_layer_spacing_mm: float | None = MIN_LAYER_SPACING_MM
    max_layer_spacing_mm: float | None = MAX_LAYER_SPACING_MM
    proximal_margin_mm: float = 3.0
    distal_margin_mm: float = 3.0
    cut_level: float = 0.995
    mode: str = "multi"  # "multi" (IMPT) or "single" (SFUD)
    max_iterations: int = 500
    tolerance: float = 1e-5
    #: lateral dose model of the spots: "single" (core Gaussian, the default), "halo" (double
    #: Gaussian, halo weight constant along depth) or "halo-depth" (halo weight growing with
    #: depth over the spot's range), from the Proteus One data (proteus_one.halo_dose_matrix);
    #: the double-Gaussian models cost a second, wider dose matrix
    lateral_model: str = "single"


@dataclass
class PlanResult:
    """Everything a plan produced."""

    beams: list
    spots: Spots
    weights: np.ndarray
    dose_gy: np.ndarray
    dose_grid: Grid
    structures: list
    dose_matrix: DoseMatrix
    optimisation: OptimisationResult
    statistics: dict
    dvhs: list
    timings_s: dict = field(default_factory=dict)


def default_objectives(target: str, prescription_gy: float, oars=(), oar_max_gy=None):
    """A target squared-deviation objective and squared-overdose objectives on organs at risk.

    ``oar_max_gy`` maps OAR names to dose limits (default: half the prescription).
    """
    oar_max_gy = oar_max_gy or {}
    objectives = [Objective(target, SQUARED_DEVIATION, prescription_gy, 1000.0)]
    for name in oars:
        limit = oar_max_gy.get(name, 0.5 * prescription_gy)
        objectives.append(Objective(name, SQUARED_OVERDOSE, limit, 100.0))
    return objectives


def target_centre_mm(structure: Structure, grid: Grid) -> np.ndarray:
    """Centre of mass of a structure's voxels (patient mm), the default isocentre."""
    return grid.points_mm(np.flatnonzero(structure.mask)).mean(axis=0)


def plan_pbs(
    ct: CT,
    structures: list[Structure],
    beams: list[Beam],
    machine: Machine,
    calibration: HuCalibration,
    objectives: list[Objective],
    *,
    target: str,
    prescription_gy: float,
    priority: list[str] | None = None,
    settings: PlanSettings | None = None,
    progress: Progress | None = None,
) -> PlanResult:
    """Plan a PBS treatment.

    Parameters
    ----------
    ct : CT
        Planning CT.
    structures : list of Structure
        Structures on the CT grid.
    beams : list of Beam
        Fields.
    machine : Machine
        Beam model.
    calibration : HuCalibration
        HU to stopping-power ratio.
    objectives : list of Objective
        Optimisation objectives (doses per fraction).
    target : str
        Name of the target structure (spots are placed over it).
    prescription_gy : float
        Prescribed target dose, for statistics.
    priority : list of str, optional
        Overlap priority of structures (default: targets, organs, external).
    settings : PlanSettings, optional
        Plan choices.
    progress : callable, optional
        ``progress(stage, done, total)``.
    """
    settings = settings or PlanSettings()
    if settings.lateral_model not in LATERAL_MODELS:
        raise ValueError(f"lateral_model must be one of {', '.join(LATERAL_MODELS)}")
    report = progress or (lambda stage, done, total: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    spr = hu_to_spr(ct.hu, calibration)
    dose_grid = ct.grid.resampled(settings.dose_grid_mm)
    on_dose = [structure_on_grid(s, ct.grid, dose_grid) for s in structures]
    names = {s.name for s in on_dose}
    if target not in names:
        raise KeyError(f"no structure named {target!r}")
    for o in objectives:
        if o.structure not in names:
            raise KeyError(f"objective on unknown structure {o.structure!r}")
    interest = np.zeros(dose_grid.shape, dtype=bool)
    for s in on_dose:
        interest |= s.mask
    target_on_dose = next(s for s in on_dose if s.name == target)
    if not target_on_dose.mask.any():
        raise ValueError("the target has no voxel on the dose grid")
    voxel_indices = np.flatnonzero(interest)
    points = dose_grid.points_mm(voxel_indices)
    in_target = target_on_dose.mask.ravel()[voxel_indices]
    timings["setup"] = time.perf_counter() - t0

    t = time.perf_counter()
    views: list[BeamView] = []
    spot_parts = []
    for b, beam in enumerate(beams):
        view = water_equivalent_depth(spr, ct.grid, beam, machine.sad_mm, points)
        views.append(view)
        tv = BeamView(
            view.u_mm[in_target],
            view.v_mm[in_target],
            view.axial_mm[in_target],
            view.wed_mm[in_target],
        )
        spot_parts.append(
            place_spots(
                tv,
                machine,
                b,
                settings.spot_spacing_mm,
                settings.lateral_margin_mm,
                settings.layer_spacing_mm,
                settings.proximal_margin_mm,
                settings.distal_margin_mm,
                layer_spacing_factor=settings.layer_spacing_factor,
                min_layer_spacing_mm=settings.min_layer_spacing_mm,
                max_layer_spacing_mm=settings.max_layer_spacing_mm,
            )
        )
        report("ray tracing", b + 1, len(beams))
    spots = concatenate_spots(spot_parts)
    timings["ray tracing and spots"] = time.perf_counter() - t

    t = time.perf_counter()
    dm = compute_dose_matrix(
        spr,
        ct.grid,
        dose_grid,
        interest,
        beams,
        spots,
        machine,
        cut_level=settings.cut_level,
        views=views,
        progress=lambda done, total: report("dose matrix", done, total),
    )
    if settings.lateral_model != "single":
        from protonpath.planning.proteus_one import halo_dose_matrix

        dm = halo_dose_matrix(
            spr, ct.grid, dose_grid, interest, beams, spots, machine, core=dm,
            along_depth=settings.lateral_model == "halo-depth",
        )  # fmt: skip
    timings["dose matrix"] = time.perf_counter() - t

    t = time.perf_counter()
    rows = {k: dm.rows_of(v) for k, v in resolve_overlaps(on_dose, priority).items()}
    report("optimisation", 0, settings.max_iterations)
    kwargs = dict(
        max_iterations=settings.max_iterations,
        tolerance=settings.tolerance,
        callback=lambda it: report("optimisation", it, settings.max_iterations),
    )
    if settings.mode == "single":
        result = optimise_single_field(dm, spots.beam_index, objectives, rows, **kwargs)
    elif settings.mode == "multi":
        result = optimise_weights(dm, objectives, rows, **kwargs)
    else:
        raise ValueError("mode must be 'multi' or 'single'")
    report("optimisation", settings.max_iterations, settings.max_iterations)
    timings["optimisation"] = time.perf_counter() - t

    dose = dm.dose_cube(result.weights)
    stats = {
        s.name: dose_statistics(dose, s.mask, prescription_gy if s.role == TARGET else None)
        for s in on_dose
    }
    dvhs: list[Dvh] = [cumulative_dvh(dose, s.mask, s.name) for s in on_dose]
    timings["total"] = time.perf_counter() - t0
    return PlanResult(
        beams, spots, result.weights, dose, dose_grid, on_dose, dm, result, stats, dvhs, timings
    )
