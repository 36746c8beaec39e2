"""A plan made deliverable on the Proteus One, and its evaluation.

The steps around :func:`protonpath.planning.pipeline.plan_pbs` (which they leave unchanged):

* :func:`choose_range_shifter` before planning: the range shifter a shallow target needs;
* :func:`make_deliverable` after it: minimum/maximum MU per spot
  (:mod:`~protonpath.planning.deliverability`), optionally fewer energy layers, and the
  delivery time (:mod:`~protonpath.planning.delivery_time`);
* :func:`evaluate_let_rbe`: LET_d and RBE-weighted doses (:mod:`~protonpath.planning.let_rbe`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from protonpath.planning.ct import CT, HuCalibration, hu_to_spr
from protonpath.planning.deliverability import DeliverabilityResult, enforce_minimum_mu
from protonpath.planning.delivery_time import (
    FractionTime,
    LayerReduction,
    fraction_delivery_time,
    reduce_energy_layers,
)
from protonpath.planning.dvh import cumulative_dvh, dose_statistics
from protonpath.planning.machine import Machine
from protonpath.planning.proteus_one import (
    ProteusOneData,
    RangeShifter,
    load_proteus_one,
    machine_with_range_shifter,
    needs_range_shifter,
)
from protonpath.planning.raytrace import water_equivalent_depth
from protonpath.planning.structures import TARGET, resolve_overlaps


def target_proximal_wed_mm(ct: CT, calibration: HuCalibration, beams, machine, target) -> float:
    """Smallest water-equivalent depth of the target over the beams (mm)."""
    spr = hu_to_spr(ct.hu, calibration)
    points = ct.grid.points_mm(np.flatnonzero(target.mask))
    return float(
        min(
            water_equivalent_depth(spr, ct.grid, b, machine.sad_mm, points).wed_mm.min()
            for b in beams
        )
    )


def choose_range_shifter(
    ct: CT,
    calibration: HuCalibration,
    beams,
    machine: Machine,
    target,
    *,
    proximal_margin_mm: float = 3.0,
    data: ProteusOneData | None = None,
) -> tuple[Machine, RangeShifter | None]:
    """``(machine, shifter)``: the machine through the data's range shifter when the target's
    proximal edge (less ``proximal_margin_mm``) is shallower than the lowest energy's Bragg
    peak, else ``(machine, None)``."""
    data = data or load_proteus_one()
    wed = target_proximal_wed_mm(ct, calibration, beams, machine, target)
    if not needs_range_shifter(wed, machine, proximal_margin_mm):
        return machine, None
    return machine_with_range_shifter(machine, data.range_shifter), data.range_shifter


@dataclass
class DeliverablePlan:
    """A plan after :func:`make_deliverable`: the plan with deliverable weights and reports."""

    plan: object  # PlanResult with the deliverable weights, dose, statistics and DVHs
    deliverability: DeliverabilityResult
    layer_reduction: LayerReduction | None
    delivery_time: FractionTime

    def summary(self) -> dict:
        out = {
            "minimum_mu": self.deliverability.as_dict(),
            "delivery_time": self.delivery_time.as_dict(),
        }
        if self.layer_reduction is not None:
            out["layer_reduction"] = self.layer_reduction.as_dict()
        return out


def _rows(result, priority=None):
    return {
        k: result.dose_matrix.rows_of(v)
        for k, v in resolve_overlaps(result.structures, priority).items()
    }


def with_weights(result, weights, prescription_gy: float):
    """The plan result with other spot weights (dose, statistics and DVHs recomputed)."""
    dose = result.dose_matrix.dose_cube(weights)
    stats = {
        s.name: dose_statistics(dose, s.mask, prescription_gy if s.role == TARGET else None)
        for s in result.structures
    }
    dvhs = [cumulative_dvh(dose, s.mask, s.name) for s in result.structures]
    return dataclasses.replace(
        result, weights=np.asarray(weights), dose_gy=dose, statistics=stats, dvhs=dvhs
    )


def make_deliverable(
    result,
    objectives,
    prescription_gy: float,
    *,
    priority=None,
    data: ProteusOneData | None = None,
    layer_weight_fraction: float | None = None,
    max_iterations: int = 200,
) -> DeliverablePlan:
    """Minimum-MU deliverable weights, optionally fewer layers, and the delivery time.

    ``layer_weight_fraction`` (e.g. 0.1) prunes layers lighter than that fraction of their
    field's mean layer weight (see :func:`reduce_energy_layers`); the time saved is reported.
    """
    data = data or load_proteus_one()
    rows = _rows(result, priority)
    deliv = enforce_minimum_mu(
        result.dose_matrix,
        objectives,
        rows,
        result.spots,
        result.weights,
        data,
        max_iterations=max_iterations,
    )
    weights = deliv.weights
    reduction = None
    if layer_weight_fraction:
        reduction = reduce_energy_layers(
            result.dose_matrix,
            objectives,
            rows,
            result.spots,
            weights,
            layer_weight_fraction=layer_weight_fraction,
            data=data,
            max_iterations=max_iterations,
        )
        weights = reduction.weights
    time = fraction_delivery_time(result.spots, weights, data, n_beams=len(result.beams))
    return DeliverablePlan(with_weights(result, weights, prescription_gy), deliv, reduction, time)


def evaluate_let_rbe(
    result,
    ct: CT,
    calibration: HuCalibration,
    machine: Machine,
    *,
    priority=None,
    models=("constant", "mcnamara", "wedenberg"),
    alpha_beta: dict | None = None,
    prescription_gy: float | None = None,
) -> dict:
    """LET_d per voxel and RBE-weighted dose statistics per structure and model.

    Returns ``{"let_d_kev_um": cube, "rbe_dose_gy": {model: cube}, "statistics": {model:
    {structure: stats}}, "let_statistics": {structure: {"mean": , "max": }}}``; doses are per
    fraction in Gy(RBE).
    """
    from protonpath.planning import let_rbe

    dm = result.dose_matrix
    spr = hu_to_spr(ct.hu, calibration)
    points = dm.grid.points_mm(dm.voxel_indices)
    weds = [
        water_equivalent_depth(spr, ct.grid, b, machine.sad_mm, points).wed_mm for b in result.beams
    ]
    lmat = let_rbe.let_matrix(dm, result.spots, machine, weds)
    let_rows = let_rbe.dose_averaged_let(dm, lmat, result.weights)
    dose_rows = dm.matrix @ result.weights
    rows = _rows(result, priority)
    ab_rows = let_rbe.alpha_beta_map(result.structures, rows, len(dose_rows), alpha_beta)
    n = int(np.prod(dm.grid.shape))

    def cube(values):
        c = np.zeros(n)
        c[dm.voxel_indices] = values
        return c.reshape(dm.grid.shape)

    let_cube = cube(let_rows)
    out = {"let_d_kev_um": let_cube, "rbe_dose_gy": {}, "statistics": {}, "let_statistics": {}}
    for model in models:
        rbe_dose = cube(let_rbe.rbe_weighted_dose(dose_rows, let_rows, ab_rows, model))
        out["rbe_dose_gy"][model] = rbe_dose
        out["statistics"][model] = {
            s.name: dose_statistics(
                rbe_dose,
                s.mask,
                prescription_gy * let_rbe.CONSTANT_RBE
                if (prescription_gy and s.role == TARGET)
                else None,
            )
            for s in result.structures
        }
    for s in result.structures:
        vals = let_cube[s.mask & (result.dose_gy > 0)]
        out["let_statistics"][s.name] = {
            "mean": float(vals.mean()) if len(vals) else 0.0,
            "max": float(vals.max()) if len(vals) else 0.0,
        }
    return out
