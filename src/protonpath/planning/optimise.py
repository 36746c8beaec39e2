"""Spot-weight optimisation with dose objectives (L-BFGS-B, non-negative weights).

The cost is a weighted sum of quadratic dose objectives, each the mean over a structure's
voxels (the matRad definitions)::

    squared deviation   mean((d - d_ref)^2)
    squared overdose    mean(max(d - d_max, 0)^2)
    squared underdose   mean(min(d - d_min, 0)^2)
    mean dose           mean(d)

with the analytic gradient ``D^T dC/dd`` computed by sparse products: a row-parallel forward
product, and a transposed product over the rows where ``dC/dd`` is non-zero only (organ voxels
below their limits contribute nothing).  Multi-field
optimisation (IMPT) optimises all spots together; single-field optimisation (SFUD) gives each
beam an equal share of the target objectives and optimises beams one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from protonpath.planning.dose import DoseMatrix, csc_matvec, csr_matvec, csr_rmatvec_rows

SQUARED_DEVIATION = "squared_deviation"
SQUARED_OVERDOSE = "squared_overdose"
SQUARED_UNDERDOSE = "squared_underdose"
MEAN_DOSE = "mean_dose"
KINDS = (SQUARED_DEVIATION, SQUARED_OVERDOSE, SQUARED_UNDERDOSE, MEAN_DOSE)


@dataclass(frozen=True)
class Objective:
    """One dose objective on one structure.

    Attributes
    ----------
    structure : str
        Structure name.
    kind : str
        One of :data:`KINDS`.
    dose_gy : float
        Reference dose (ignored for ``mean_dose``).
    weight : float
        Relative importance (matRad "penalty").
    """

    structure: str
    kind: str
    dose_gy: float = 0.0
    weight: float = 1.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown objective kind {self.kind!r}")


def objective_value_and_gradient(objective: Objective, dose: np.ndarray):
    """Value and gradient with respect to ``dose`` of one objective on its voxels' doses."""
    n = max(len(dose), 1)
    if objective.kind == SQUARED_DEVIATION:
        diff = dose - objective.dose_gy
    elif objective.kind == SQUARED_OVERDOSE:
        diff = np.maximum(dose - objective.dose_gy, 0.0)
    elif objective.kind == SQUARED_UNDERDOSE:
        diff = np.minimum(dose - objective.dose_gy, 0.0)
    else:
        return objective.weight * dose.sum() / n, np.full(len(dose), objective.weight / n)
    return objective.weight * (diff @ diff) / n, objective.weight * 2.0 * diff / n


@dataclass(frozen=True)
class OptimisationResult:
    """Optimised spot weights (10^6 protons) and how the optimiser ended."""

    weights: np.ndarray
    objective: float
    iterations: int
    evaluations: int
    message: str


class _Problem:
    """Cost and gradient of weighted objectives for a dose-influence matrix."""

    def __init__(self, dose_matrix: DoseMatrix, objectives, rows: dict[str, np.ndarray]):
        self.dm = dose_matrix
        self.csr = dose_matrix.matrix.tocsr()  # row-parallel forward products
        self.terms = [(o, rows[o.structure]) for o in objectives if len(rows[o.structure])]
        self.n_evaluations = 0

    def __call__(self, w: np.ndarray):
        self.n_evaluations += 1
        dose = csr_matvec(self.csr, w)
        grad_dose = np.zeros_like(dose)
        total = 0.0
        for o, r in self.terms:
            f, g = objective_value_and_gradient(o, dose[r])
            total += f
            grad_dose[r] += g
        active = np.flatnonzero(grad_dose)
        return total, csr_rmatvec_rows(self.csr, grad_dose, active)


def initial_weights(dose_matrix: DoseMatrix, target_rows: np.ndarray, dose_gy: float):
    """Uniform weights giving a mean target dose of ``dose_gy``."""
    n = dose_matrix.n_spots
    ones = np.ones(n)
    mean = csc_matvec(dose_matrix.matrix, ones)[target_rows].mean()
    return ones * (dose_gy / mean if mean > 0 else 1.0)


def optimise_weights(
    dose_matrix: DoseMatrix,
    objectives,
    rows: dict[str, np.ndarray],
    *,
    initial: np.ndarray | None = None,
    max_iterations: int = 500,
    tolerance: float = 1e-5,
    callback: Callable[[int], None] | None = None,
) -> OptimisationResult:
    """Non-negative spot weights minimising the objectives (all spots together).

    Parameters
    ----------
    dose_matrix : DoseMatrix
        Dose-influence matrix.
    objectives : sequence of Objective
        Objectives; each names a key of ``rows``.
    rows : dict of str to ndarray
        Matrix rows of each structure (see :meth:`DoseMatrix.rows_of`); usually after
        :func:`structures.resolve_overlaps`.
    initial : ndarray, optional
        Starting weights (default: uniform weights that give the first target objective's dose).
    max_iterations : int
        L-BFGS-B iteration cap.
    tolerance : float
        Objective tolerance given to :func:`scipy.optimize.minimize`.
    callback : callable, optional
        Called with the iteration number after each iteration.
    """
    problem = _Problem(dose_matrix, objectives, rows)
    if initial is None:
        targets = [o for o in objectives if o.kind in (SQUARED_DEVIATION, SQUARED_UNDERDOSE)]
        ref = targets[0] if targets else objectives[0]
        initial = initial_weights(dose_matrix, rows[ref.structure], ref.dose_gy or 1.0)
    iteration = [0]

    def on_iteration(_x):
        iteration[0] += 1
        if callback is not None:
            callback(iteration[0])

    res = optimize.minimize(
        problem,
        np.asarray(initial, dtype=np.float64),
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, None)] * dose_matrix.n_spots,
        tol=tolerance,
        options={"maxiter": max_iterations},
        callback=on_iteration,
    )
    return OptimisationResult(
        np.maximum(res.x, 0.0),
        float(res.fun),
        int(res.nit),
        problem.n_evaluations,
        str(res.message),
    )


def optimise_single_field(
    dose_matrix: DoseMatrix,
    beam_index: np.ndarray,
    objectives,
    rows: dict[str, np.ndarray],
    **kwargs,
) -> OptimisationResult:
    """Single-field uniform dose: each beam alone delivers ``1/n_beams`` of the target dose.

    Every objective's reference dose is scaled to the beam's share, and each beam is optimised
    on its own dose; the reported objective is that of the summed plan.
    """
    import scipy.sparse as sp

    from protonpath.planning.dose import DoseMatrix as _DM

    beams = np.unique(beam_index)
    share = 1.0 / len(beams)
    weights = np.zeros(dose_matrix.n_spots)
    total_iter, total_eval, messages = 0, 0, []
    for b in beams:
        cols = np.flatnonzero(beam_index == b)
        sub = _DM(
            sp.csc_matrix(dose_matrix.matrix[:, cols]), dose_matrix.voxel_indices, dose_matrix.grid
        )
        scaled = [
            Objective(o.structure, o.kind, o.dose_gy * share, o.weight)
            if o.kind != MEAN_DOSE
            else o
            for o in objectives
        ]
        res = optimise_weights(sub, scaled, rows, **kwargs)
        weights[cols] = res.weights
        total_iter += res.iterations
        total_eval += res.evaluations
        messages.append(res.message)
    problem = _Problem(dose_matrix, objectives, rows)
    value, _ = problem(weights)
    return OptimisationResult(weights, float(value), total_iter, total_eval, "; ".join(messages))
