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
import scipy.sparse as sp
from scipy import optimize

from protonpath.planning.blocks import BlockRows
from protonpath.planning.dose import DoseMatrix, csc_matvec

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


def objective_value_and_gradient(
    objective: Objective, dose: np.ndarray, n_voxels: int | None = None
):
    """Value and gradient with respect to ``dose`` of one objective on its voxels' doses.

    ``n_voxels`` is the structure's size when ``dose`` holds only some of its voxels (the
    others contributing nothing).
    """
    n = max(len(dose) if n_voxels is None else n_voxels, 1)
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
    """Cost and gradient of weighted objectives for a dose-influence matrix.

    ``matrix`` is a :class:`DoseMatrix`, a SciPy sparse matrix or a :class:`BlockRows`.  With
    ``watched`` (matrix rows), only those rows are computed, and ``rows`` number them by their
    position in ``watched``; ``sizes`` then gives each structure's full voxel count.
    """

    def __init__(self, matrix, objectives, rows: dict[str, np.ndarray], sizes=None, watched=None):
        if isinstance(matrix, BlockRows):
            self.blocks = matrix
        else:
            self.blocks = BlockRows.from_matrix(
                matrix.matrix if isinstance(matrix, DoseMatrix) else matrix
            )
        self.watched = None if watched is None else np.asarray(watched, dtype=np.uint64)
        sizes = sizes or {k: len(r) for k, r in rows.items()}
        self.terms = [
            (o, rows[o.structure], sizes[o.structure]) for o in objectives if len(rows[o.structure])
        ]
        self.n_evaluations = 0

    def __call__(self, w: np.ndarray):
        self.n_evaluations += 1
        dose = self.blocks.matvec(w, self.watched)
        grad_dose = np.zeros_like(dose)
        total = 0.0
        for o, r, n in self.terms:
            f, g = objective_value_and_gradient(o, dose[r], n)
            total += f
            grad_dose[r] += g
        active = np.flatnonzero(grad_dose)
        active_rows = active if self.watched is None else self.watched[active]
        return total, self.blocks.rmatvec(grad_dose[active], active_rows)


def _watch(objectives, rows, dose, margin, watched):
    """Mark in ``watched`` (a boolean per matrix row) the rows an objective can act on: all
    rows of non-overdose objectives, and the rows of overdose objectives whose dose is at least
    ``margin`` times their limit."""
    for o in objectives:
        r = rows[o.structure]
        if o.kind == SQUARED_OVERDOSE:
            r = r[dose[r] >= margin * o.dose_gy]
        watched[r] = True
    return watched


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
    watch_margin: float | None = 0.8,
    first_round_iterations: int = 20,
) -> OptimisationResult:
    """Non-negative spot weights minimising the objectives (all spots together).

    Overdose objectives are zero, with zero gradient, on voxels below their limit, so the
    optimiser works on the matrix rows that can matter: every row of the other objectives and
    the rows of overdose objectives at or above ``watch_margin`` times their limit.  L-BFGS-B
    runs in short rounds (``first_round_iterations``, then doubling); after each round the full
    dose is computed and voxels that came near their limit join the watched rows.  Once a round
    adds no row, a last round runs to convergence or to ``max_iterations`` iterations in all
    (followed by another only if that one adds rows).  The returned objective is that of the
    full matrix.

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
    watch_margin : float or None
        Fraction of an overdose limit from which a voxel's row is optimised on; ``None`` uses
        every row in every iteration.
    first_round_iterations : int
        Iterations of the first round.
    """
    if initial is None:
        targets = [o for o in objectives if o.kind in (SQUARED_DEVIATION, SQUARED_UNDERDOSE)]
        ref = targets[0] if targets else objectives[0]
        initial = initial_weights(dose_matrix, rows[ref.structure], ref.dose_gy or 1.0)
    # the matrix in the products' layout, built once; each round computes the rows it watches
    full = BlockRows.from_matrix(dose_matrix.matrix)
    w = np.asarray(initial, dtype=np.float64)
    iteration = [0]
    # L-BFGS-B's tolerance is relative only while the objective is above 1: scale it to start
    # at 1e6, so doses per fraction (small objectives) converge like whole courses
    start_value, _ = _Problem(full, objectives, rows)(w)
    scale = 1e6 / start_value if start_value > 0 else 1.0

    def on_iteration(_x):
        iteration[0] += 1
        if callback is not None:
            callback(iteration[0])

    evaluations = 0
    message = ""
    sizes = {k: len(r) for k, r in rows.items()}
    watched = np.ones(full.shape[0], dtype=bool)
    if watch_margin is not None:
        watched = _watch(objectives, rows, full.matvec(w), watch_margin, ~watched)
    chunk = first_round_iterations if watch_margin is not None else max_iterations
    # one Bounds object (a list of 10^4 tuples is converted again by every round)
    non_negative = optimize.Bounds(
        np.zeros(dose_matrix.n_spots), np.full(dose_matrix.n_spots, np.inf)
    )
    settled = False
    while iteration[0] < max_iterations:
        position = np.cumsum(watched) - 1  # of each watched row among the watched rows
        sub_rows = {k: position[r[watched[r]]] for k, r in rows.items()}
        problem = _Problem(full, objectives, sub_rows, sizes, np.flatnonzero(watched))

        def scaled(x, problem=problem):
            value, grad = problem(x)
            return value * scale, grad * scale

        res = optimize.minimize(
            scaled,
            w,
            jac=True,
            method="L-BFGS-B",
            bounds=non_negative,
            tol=tolerance,
            options={"maxiter": min(chunk, max_iterations - iteration[0])},
            callback=on_iteration,
        )
        w = np.maximum(res.x, 0.0)
        evaluations += problem.n_evaluations
        message = str(res.message)
        if watch_margin is None:
            break
        # rows only ever join the watched set, so this settles; once a round adds none, a last
        # round with all remaining iterations runs (L-BFGS-B keeps its memory through it)
        before = np.count_nonzero(watched)
        grown = np.count_nonzero(_watch(objectives, rows, full.matvec(w), watch_margin, watched))
        if settled and grown == before:
            break
        settled = grown == before
        chunk = max_iterations if settled else 2 * chunk
    value, _ = _Problem(full, objectives, rows)(w)
    return OptimisationResult(w, float(value), iteration[0], evaluations + 1, message)


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
    beams = np.unique(beam_index)
    share = 1.0 / len(beams)
    weights = np.zeros(dose_matrix.n_spots)
    total_iter, total_eval, messages = 0, 0, []
    for b in beams:
        cols = np.flatnonzero(beam_index == b)
        sub = DoseMatrix(
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
