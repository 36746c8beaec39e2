"""Spot-weight optimisation with dose objectives (L-BFGS-B, non-negative weights).

The cost is a weighted sum of quadratic dose objectives, each the mean over a structure's
voxels (the matRad definitions)::

    squared deviation   mean((d - d_ref)^2)
    squared overdose    mean(max(d - d_max, 0)^2)
    squared underdose   mean(min(d - d_min, 0)^2)
    mean dose           mean(d)

with the analytic gradient ``D^T dC/dd`` computed by sparse products on the matrix stored as
blocks of consecutive spots (:mod:`protonpath.planning.blocks`): a forward product over the
rows an objective can act on, and a transposed product over the rows where ``dC/dd`` is
non-zero only (organ voxels below their limits contribute nothing).  The optimiser is
protonpath's L-BFGS-B (:mod:`protonpath.planning.lbfgsb`) by default, SciPy's on request
(``optimise_weights(method="scipy")``).  Multi-field
optimisation (IMPT) optimises all spots together; single-field optimisation (SFUD) gives each
beam an equal share of the target objectives and optimises beams one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import optimize
from threadpoolctl import threadpool_limits

from protonpath.planning import lbfgsb
from protonpath.planning.blocks import (
    TERM_DEVIATION,
    TERM_MEAN,
    TERM_OVERDOSE,
    TERM_UNDERDOSE,
    BlockRows,
)
from protonpath.planning.dose import DoseMatrix, csc_matvec
from protonpath.planning.threads import fitted_threads

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
    threads: int = 1  # the product threads it ran on (threads.fitted_threads)


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
        n_positions = self.blocks.shape[0] if watched is None else len(self.watched)
        self.term_arrays = tuple(
            np.ascontiguousarray(a, dtype=t)
            for a, t in zip(
                _term_arrays(self.terms, n_positions),
                (np.int64, np.int8, np.float64, np.float64),
                strict=True,
            )
        )
        self.split = self.blocks.split(self.watched)  # once, not at every evaluation
        self.n_evaluations = 0

    def __call__(self, w: np.ndarray):
        """Objective value and gradient, in one pass over the matrix
        (:meth:`BlockRows.objective`)."""
        self.n_evaluations += 1
        return self.blocks.objective(w, self.watched, *self.term_arrays, split=self.split)


_TERM_KIND = {
    SQUARED_DEVIATION: TERM_DEVIATION,
    SQUARED_OVERDOSE: TERM_OVERDOSE,
    SQUARED_UNDERDOSE: TERM_UNDERDOSE,
    MEAN_DOSE: TERM_MEAN,
}


def _term_arrays(terms, n_positions: int):
    """The per-row terms of :meth:`BlockRows.objective` for ``(objective, positions, size)``
    triples: each objective's weight divided by its structure's size (the matRad means)."""
    if not terms:
        empty = np.zeros(0)
        return np.zeros(n_positions + 1, dtype=np.int64), empty.astype(np.int8), empty, empty
    position = np.concatenate([np.asarray(r, dtype=np.int64) for _, r, _ in terms])
    kind = np.concatenate([np.full(len(r), _TERM_KIND[o.kind], np.int8) for o, r, _ in terms])
    ref = np.concatenate([np.full(len(r), float(o.dose_gy)) for o, r, _ in terms])
    coef = np.concatenate([np.full(len(r), o.weight / max(n, 1)) for o, r, n in terms])
    order = np.argsort(position, kind="stable")
    term_ptr = np.zeros(n_positions + 1, dtype=np.int64)
    np.cumsum(np.bincount(position, minlength=n_positions), out=term_ptr[1:])
    return term_ptr, kind[order], ref[order], coef[order]


def objectives_value(dose: np.ndarray, objectives, rows: dict[str, np.ndarray]) -> float:
    """Weighted sum of the objectives for the dose of every matrix row."""
    total = 0.0
    for o in objectives:
        r = rows[o.structure]
        if len(r):
            total += objective_value_and_gradient(o, dose[r], len(r))[0]
    return float(total)


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
    watch_every: int = 25,
    stop_below: float | None = None,
    compact: bool = True,
    method: str = "lbfgsb",
    memory: int = 10,
) -> OptimisationResult:
    """Non-negative spot weights minimising the objectives (all spots together).

    Overdose objectives are zero, with zero gradient, on voxels below their limit, so the
    optimiser works on the matrix rows that can matter: every row of the other objectives and
    the rows of overdose objectives at or above ``watch_margin`` times their limit.  While every
    other row stays below its limit this is the full problem, not an approximation, so one
    L-BFGS-B run goes on throughout (restarting would throw away its curvature memory): after
    iterations 1, 2, 4, 8 and 16, then every ``watch_every`` iterations, the full dose is
    computed and voxels that came near their limit join the watched rows.  With the default
    ``method="lbfgsb"`` (:mod:`protonpath.planning.lbfgsb`) the run goes on with the grown
    problem and its curvature memory kept, and looks once more before it stops on convergence;
    its value and gradient there are the old ones plus the joining rows' (a pass over those
    rows only).  With ``method="scipy"`` SciPy's L-BFGS-B goes on with the grown problem and,
    if it converges in an iteration that added rows (or with rows near their limits left
    out), runs again with the remaining iterations, losing its memory.  The returned objective
    is that of the full matrix.

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
        Relative decrease and projected-gradient tolerance (``ftol`` and ``pgtol``; SciPy's
        ``minimize(tol=)``).
    callback : callable, optional
        Called with the iteration number after each iteration.
    watch_margin : float or None
        Fraction of an overdose limit from which a voxel's row is optimised on; ``None`` uses
        every row in every iteration.
    watch_every : int
        Iterations between two looks for rows to watch, after the first 16.
    stop_below : float, optional
        Stop as soon as the objective is at or below this value (to compare optimisers at
        equal plan quality).
    compact : bool
        Products on the matrix stored in 16 bits per value, scaled per block
        (:meth:`BlockRows.compact`: doses within 1e-5 of each block's largest value, and a
        third less memory to read per product); ``False`` keeps float32 values.
    method : str
        ``"lbfgsb"``: protonpath's L-BFGS-B (:mod:`protonpath.planning.lbfgsb`, its
        bookkeeping compiled), which keeps its curvature memory when rows join the problem;
        ``"scipy"``: :func:`scipy.optimize.minimize`'s L-BFGS-B, run again with the
        remaining iterations when it converges in an iteration that added rows.
    memory : int
        Correction pairs kept by ``"lbfgsb"`` (SciPy's default is 10 too).
    """
    if method not in ("lbfgsb", "scipy"):
        raise ValueError(f"unknown method {method!r}")
    if initial is None:
        targets = [o for o in objectives if o.kind in (SQUARED_DEVIATION, SQUARED_UNDERDOSE)]
        ref = targets[0] if targets else objectives[0]
        initial = initial_weights(dose_matrix, rows[ref.structure], ref.dose_gy or 1.0)
    # as many product threads as the CPUs other processes leave free (see threads.py)
    with fitted_threads() as n_threads:
        # the matrix in the products' layout, built once; the problem computes the watched rows
        stored = dose_matrix.matrix
        compact = compact and (stored.nnz == 0 or float(stored.data.min()) >= 0.0)
        full = BlockRows.from_matrix(stored, compact=compact)
        w = np.asarray(initial, dtype=np.float64)
        # the start's value on every row (its per-row terms are not kept: the CT grid has millions)
        start_value, _ = _Problem(full, objectives, rows)(w)
        # L-BFGS-B's tolerance is relative only while the objective is above 1: scale it to start
        # at 1e6, so doses per fraction (small objectives) converge like whole courses
        scale = 1e6 / start_value if start_value > 0 else 1.0
        watched = np.ones(full.shape[0], dtype=bool)
        if watch_margin is not None:
            watched = _watch(objectives, rows, full.matvec(w), watch_margin, ~watched)
        run = _Run(
            full,
            objectives,
            rows,
            {k: len(r) for k, r in rows.items()},
            watched,
            watch_margin,
            watch_every,
            scale,
            max_iterations,
            tolerance,
            callback,
            stop_below,
        )
        if method == "lbfgsb":
            w, iterations, evaluations, message = _own_lbfgsb(run, w, memory)
        else:
            w, iterations, evaluations, message = _scipy_lbfgsb(run, w)
        # the returned objective is the stored matrix's (float32), whatever the products used
        value = objectives_value(csc_matvec(dose_matrix.matrix, w), objectives, rows)
        return OptimisationResult(w, float(value), iterations, evaluations, message, n_threads)


def _watched_problem(matrix, objectives, rows, sizes, mask) -> _Problem:
    """The problem on the rows of ``mask`` only (``sizes``: each structure's full count)."""
    position = np.cumsum(mask) - 1  # of each watched row among the watched rows
    sub_rows = {k: position[r[mask[r]]] for k, r in rows.items()}
    return _Problem(matrix, objectives, sub_rows, sizes, np.flatnonzero(mask))


@dataclass
class _Run:
    """What both L-BFGS-B drivers of :func:`optimise_weights` share: the matrix, the
    objectives, the watched rows (``watched``, grown in place) and the run's settings."""

    full: BlockRows
    objectives: list
    rows: dict
    sizes: dict
    watched: np.ndarray
    margin: float | None
    every: int
    scale: float
    max_iterations: int
    tolerance: float
    callback: Callable[[int], None] | None
    stop_below: float | None

    def problem(self, mask: np.ndarray | None = None) -> _Problem:
        """The problem on the watched rows (or on the rows of ``mask``)."""
        mask = self.watched if mask is None else mask
        return _watched_problem(self.full, self.objectives, self.rows, self.sizes, mask)

    def looks(self, i: int) -> bool:
        """Whether iteration ``i`` looks for rows to watch: 1, 2, 4, 8, 16, then every
        ``every`` (never without a margin)."""
        return self.margin is not None and (
            i in (1, 2, 4, 8, 16) or (i > 16 and i % self.every == 0)
        )

    def grow(self, w: np.ndarray) -> np.ndarray:
        """Rows near their limits at ``w`` join the watched rows; returns those that joined."""
        before = self.watched.copy()
        _watch(self.objectives, self.rows, self.full.matvec(w), self.margin, self.watched)
        return self.watched & ~before

    def reached(self, scaled_value: float) -> bool:
        """Whether the objective (scaled) is at or below ``stop_below``."""
        return self.stop_below is not None and scaled_value / self.scale <= self.stop_below


def _own_lbfgsb(run: _Run, w, memory):
    """:func:`optimise_weights` with :func:`lbfgsb.minimize`: rows join the problem from
    the callback (or when it converges) and the run goes on with its memory."""
    problem = [run.problem()]
    scale = run.scale

    def scaled(x):
        value, grad = problem[0](x)
        grad *= scale
        return value * scale, grad

    def grow(it):
        """The scaled objective of the grown problem, with its value and gradient at ``it.x``
        (the objective is a sum over rows: the old value plus the joining rows'), or None if
        no row joined."""
        joined = run.grow(it.x)
        if not joined.any():
            return None
        problem[0] = run.problem()
        value, grad = run.problem(joined)(it.x)
        grad *= scale
        grad += it.jac
        return scaled, it.fun + value * scale, grad

    def on_iteration(it):
        if run.callback is not None:
            run.callback(it.nit)
        if run.reached(it.fun):
            raise StopIteration
        return grow(it) if run.looks(it.nit) else None

    def on_converged(it):
        return None if run.margin is None else grow(it)

    # one BLAS thread while optimising, as in _scipy_lbfgsb
    with threadpool_limits(limits=1, user_api="blas"):
        res = lbfgsb.minimize(
            scaled,
            w,
            0.0,
            None,
            m=memory,
            maxiter=run.max_iterations,
            ftol=run.tolerance,
            pgtol=run.tolerance,
            callback=on_iteration,
            on_converged=on_converged,
        )
    return np.maximum(res.x, 0.0), res.nit, res.nfev, res.message


def _scipy_lbfgsb(run: _Run, w):
    """:func:`optimise_weights` with SciPy's L-BFGS-B, restarted when it converged in an
    iteration that added rows or with rows near their limits left out."""
    state = {"problem": run.problem(), "iteration": 0, "evaluations": 0, "grew": False}

    def scaled(x):
        value, grad = state["problem"](x)
        return value * run.scale, grad * run.scale

    def on_iteration(intermediate_result):
        state["iteration"] += 1
        i = state["iteration"]
        if run.callback is not None:
            run.callback(i)
        if run.reached(intermediate_result.fun):
            raise StopIteration
        if run.looks(i):
            state["grew"] = bool(run.grow(intermediate_result.x).any())
            if state["grew"]:
                state["evaluations"] += state["problem"].n_evaluations
                state["problem"] = run.problem()

    n_spots = run.full.shape[1]
    non_negative = optimize.Bounds(np.zeros(n_spots), np.full(n_spots, np.inf))
    message = ""
    # L-BFGS-B's vector work is serial, but its BLAS calls can wake OpenBLAS threads that
    # then spin on the core numba's product threads need (the products ran 1.7x slower on
    # 2 cores): one BLAS thread while optimising
    with threadpool_limits(limits=1, user_api="blas"):
        while state["iteration"] < run.max_iterations:
            state["grew"] = False
            res = optimize.minimize(
                scaled,
                w,
                jac=True,
                method="L-BFGS-B",
                bounds=non_negative,
                tol=run.tolerance,
                options={"maxiter": run.max_iterations - state["iteration"]},
                callback=on_iteration,
            )
            w = np.maximum(res.x, 0.0)
            message = str(res.message)
            if run.margin is None or not res.success or run.reached(res.fun):
                break
            # converged: on the full problem too, unless rows near their limits were left out
            if not run.grow(w).any() and not state["grew"]:
                break
            state["evaluations"] += state["problem"].n_evaluations
            state["problem"] = run.problem()
    evaluations = state["evaluations"] + state["problem"].n_evaluations
    return w, state["iteration"], evaluations, message


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
