"""Minimum-MU deliverability: every delivered spot is 0 or within the machine's MU limits.

Two stages (the usual clinical approach, e.g. in commercial planning systems' "minimum MU"
post-processing): after the unconstrained optimisation, spots whose weight is below
``drop_fraction`` times the minimum are removed, then the remaining spots are re-optimised
with the bounds ``[min, max]`` (limits per spot, converted from MU by the machine's monitor
calibration, so they depend on the spot's energy).  Re-optimising, rather than rounding,
lets the other spots make up for the removed ones, so the plan keeps its quality; the report
gives the objective before and after.

This module computes the objectives itself (with
:func:`protonpath.planning.optimise.objective_value_and_gradient`) on the sparse dose-influence
matrix, so it does not depend on the optimiser's internals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import optimize

from protonpath.planning import lbfgsb
from protonpath.planning.dose import DoseMatrix
from protonpath.planning.optimise import objective_value_and_gradient


@dataclass(frozen=True)
class DeliverabilityResult:
    """Weights that respect the spot limits and what it cost.

    Attributes
    ----------
    weights : ndarray
        Spot weights (10^6 protons); each is 0 or within ``[min_weight, max_weight]``.
    removed : int
        Spots that had a non-zero weight below the minimum and were set to 0.
    raised : int
        Spots below the minimum kept and brought up to it by the re-optimisation.
    active_before, active_after : int
        Spots with a non-zero weight before and after.
    objective_before, objective_after : float
        Objective of the unconstrained and of the deliverable weights.
    iterations : int
        Re-optimisation iterations.
    """

    weights: np.ndarray
    removed: int
    raised: int
    active_before: int
    active_after: int
    objective_before: float
    objective_after: float
    iterations: int

    def as_dict(self) -> dict:
        return {
            "spots_removed": self.removed,
            "spots_raised_to_minimum": self.raised,
            "active_spots_before": self.active_before,
            "active_spots_after": self.active_after,
            "objective_before": self.objective_before,
            "objective_after": self.objective_after,
            "iterations": self.iterations,
        }


def _matrix(dose_matrix) -> sp.csc_matrix:
    m = dose_matrix.matrix if isinstance(dose_matrix, DoseMatrix) else dose_matrix
    return sp.csc_matrix(m)


def plan_objective(matrix, objectives, rows, weights) -> float:
    """Sum of the objectives for ``weights`` on the whole matrix."""
    dose = _matrix(matrix) @ np.asarray(weights, dtype=float)
    return float(
        sum(objective_value_and_gradient(o, dose[rows[o.structure]])[0] for o in objectives)
    )


def reoptimise_bounded(
    matrix,
    objectives,
    rows,
    initial,
    lower,
    upper,
    *,
    active=None,
    max_iterations: int = 200,
    tolerance: float = 1e-7,
    method: str = "lbfgsb",
):
    """L-BFGS-B over the ``active`` spots with per-spot bounds; others stay 0.

    ``method`` is ``"lbfgsb"`` (:func:`protonpath.planning.lbfgsb.minimize`) or ``"scipy"``
    (:func:`scipy.optimize.minimize`).  Returns ``(weights, iterations)``.
    """
    full = _matrix(matrix)
    n = full.shape[1]
    active = np.arange(n) if active is None else np.flatnonzero(np.asarray(active))
    sub = sp.csc_matrix(full[:, active])
    sub_t = sp.csr_matrix(sub.T)
    terms = [(o, rows[o.structure]) for o in objectives if len(rows[o.structure])]
    lo = np.broadcast_to(np.asarray(lower, dtype=float), (n,))[active]
    hi = np.broadcast_to(np.asarray(upper, dtype=float), (n,))[active]
    x0 = np.clip(np.asarray(initial, dtype=float)[active], lo, hi)

    def value(x):
        dose = sub @ x
        grad_dose = np.zeros_like(dose)
        total = 0.0
        for o, r in terms:
            f, g = objective_value_and_gradient(o, dose[r])
            total += f
            grad_dose[r] += g
        return total, sub_t @ grad_dose

    start, _ = value(x0)
    scale = 1e6 / start if start > 0 else 1.0

    def scaled(x):
        f, g = value(x)
        return f * scale, g * scale

    weights = np.zeros(n)
    if len(active) == 0:
        return weights, 0
    if method == "lbfgsb":
        res = lbfgsb.minimize(
            scaled, x0, lo, hi, maxiter=max_iterations, ftol=tolerance, pgtol=tolerance
        )
    elif method == "scipy":
        res = optimize.minimize(
            scaled,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=optimize.Bounds(lo, hi),
            tol=tolerance,
            options={"maxiter": max_iterations},
        )
    else:
        raise ValueError(f"unknown method {method!r}")
    weights[active] = np.clip(res.x, lo, hi)
    return weights, int(res.nit)


def enforce_minimum_weight(
    dose_matrix,
    objectives,
    rows: dict[str, np.ndarray],
    weights: np.ndarray,
    min_weight,
    max_weight=np.inf,
    *,
    drop_fraction: float = 0.5,
    max_iterations: int = 200,
) -> DeliverabilityResult:
    """Make ``weights`` deliverable: 0 or within ``[min_weight, max_weight]`` for every spot.

    Parameters
    ----------
    dose_matrix : DoseMatrix or sparse matrix
        Dose-influence matrix (rows: voxels of ``rows``; columns: spots).
    objectives, rows
        As for :func:`protonpath.planning.optimise.optimise_weights`.
    weights : ndarray
        Optimised (unconstrained) weights, 10^6 protons.
    min_weight, max_weight : float or ndarray
        Limits per spot in the same unit (see :func:`minimum_weights_from_mu`).
    drop_fraction : float
        Spots below ``drop_fraction * min_weight`` are removed; those between that and the
        minimum are kept and the bounds raise them to it.
    max_iterations : int
        Iteration cap of the re-optimisation.
    """
    w = np.asarray(weights, dtype=float)
    n = len(w)
    lo = np.broadcast_to(np.asarray(min_weight, dtype=float), (n,)).copy()
    hi = np.broadcast_to(np.asarray(max_weight, dtype=float), (n,)).copy()
    if np.any(lo <= 0) or np.any(hi < lo):
        raise ValueError("spot limits need 0 < minimum <= maximum")
    if not 0.0 <= drop_fraction <= 1.0:
        raise ValueError("drop_fraction must be between 0 and 1")
    before = plan_objective(dose_matrix, objectives, rows, w)
    nonzero = w > 0
    keep = w >= drop_fraction * lo
    removed = int(np.count_nonzero(nonzero & ~keep))
    raised = int(np.count_nonzero(keep & (w < lo)))
    new, iterations = reoptimise_bounded(
        dose_matrix, objectives, rows, w, lo, hi, active=keep, max_iterations=max_iterations
    )
    after = plan_objective(dose_matrix, objectives, rows, new)
    return DeliverabilityResult(
        new,
        removed,
        raised,
        int(np.count_nonzero(nonzero)),
        int(np.count_nonzero(new)),
        before,
        after,
        iterations,
    )


def minimum_weights_from_mu(spots, data=None):
    """Per-spot ``(min_weight, max_weight)`` in 10^6 protons from the Proteus One MU limits."""
    from protonpath.planning.proteus_one import load_proteus_one, mu_to_weights

    data = data or load_proteus_one()
    lo = mu_to_weights(np.full(len(spots), data.min_mu_per_spot), spots.energy_mev, data)
    hi = mu_to_weights(np.full(len(spots), data.max_mu_per_spot), spots.energy_mev, data)
    return lo, hi


def enforce_minimum_mu(dose_matrix, objectives, rows, spots, weights, data=None, **kwargs):
    """:func:`enforce_minimum_weight` with the Proteus One's MU limits per spot."""
    lo, hi = minimum_weights_from_mu(spots, data)
    return enforce_minimum_weight(dose_matrix, objectives, rows, weights, lo, hi, **kwargs)
