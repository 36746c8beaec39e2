"""Robust spot-weight optimisation over uncertainty scenarios.

Each objective (:class:`protonpath.planning.optimise.Objective`) is given a robustness
(:class:`RobustObjective`):

``nominal``
    scored on the nominal scenario's dose only;
``stochastic``
    expected value over the scenarios, ``sum_s p_s f(d_s)``;
``voxel_worst_case``
    scored on the worst dose of each voxel over the scenarios: the minimum for underdose
    objectives, the maximum for overdose and mean-dose objectives, and for squared deviation
    the scenario dose farthest from the reference (matRad's "VWWC");
``composite_worst_case``
    the objectives with this robustness form one composite ``F_s(w)`` per scenario and the
    cost holds its maximum over scenarios, ``max_s F_s`` (minimax, OpenTPS' and matRad's
    "COWC").

The total cost is the sum of the nominal, stochastic and voxel-wise terms plus the composite
maximum.  Gradients are exact (``sum_s D_s^T dC/dd_s``, products on the rows where the dose
gradient is non-zero); the maximum is either smoothed (``T log sum_s exp(F_s / T)``,
whose gradient weighs each scenario by its softmax share, with ``T`` decreasing in stages:
:data:`SMOOTH_MAX`) and minimised by L-BFGS-B, or written as an epigraph ``min t`` subject to
``F_s(w) <= t`` and solved by SLSQP (:data:`EPIGRAPH`).  ``bench/robust.py`` measures which
reaches the lower worst case faster; L-BFGS-B on the smoothed maximum is the default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits

from protonpath.planning.optimise import (
    MEAN_DOSE,
    SQUARED_DEVIATION,
    SQUARED_OVERDOSE,
    SQUARED_UNDERDOSE,
    Objective,
    objective_value_and_gradient,
)
from protonpath.planning.scenarios import ScenarioMatrices
from protonpath.planning.threads import fitted_threads

NOMINAL = "nominal"
STOCHASTIC = "stochastic"
VOXEL_WORST_CASE = "voxel_worst_case"
COMPOSITE_WORST_CASE = "composite_worst_case"
ROBUSTNESS = (NOMINAL, STOCHASTIC, VOXEL_WORST_CASE, COMPOSITE_WORST_CASE)

SMOOTH_MAX = "lbfgsb_smooth_max"
EPIGRAPH = "slsqp_epigraph"
METHODS = (SMOOTH_MAX, EPIGRAPH)


@dataclass(frozen=True)
class RobustObjective:
    """An objective and how it is scored over the scenarios (one of :data:`ROBUSTNESS`)."""

    objective: Objective
    robustness: str = NOMINAL

    def __post_init__(self):
        if self.robustness not in ROBUSTNESS:
            raise ValueError(
                f"unknown robustness {self.robustness!r}; one of {', '.join(ROBUSTNESS)}"
            )

    def to_dict(self) -> dict:
        o = self.objective
        return {
            "structure": o.structure,
            "kind": o.kind,
            "dose_gy": o.dose_gy,
            "weight": o.weight,
            "robustness": self.robustness,
        }


def as_robust(objectives, robustness: str = NOMINAL) -> list[RobustObjective]:
    """Objectives as :class:`RobustObjective` (plain ones get ``robustness``)."""
    return [
        o if isinstance(o, RobustObjective) else RobustObjective(o, robustness) for o in objectives
    ]


def _worst_index(objective: Objective, doses: np.ndarray) -> np.ndarray:
    """Scenario of each voxel's worst dose (``doses`` is scenarios x voxels)."""
    if objective.kind == SQUARED_UNDERDOSE:
        return np.argmin(doses, axis=0)
    if objective.kind in (SQUARED_OVERDOSE, MEAN_DOSE):
        return np.argmax(doses, axis=0)
    assert objective.kind == SQUARED_DEVIATION
    return np.argmax(np.abs(doses - objective.dose_gy), axis=0)


@dataclass(frozen=True)
class RobustValue:
    """Cost of a plan: the total, and the composite objective of each scenario."""

    total: float
    composite: np.ndarray  # F_s per scenario (empty without composite objectives)
    other: float  # nominal + stochastic + voxel-wise terms


class RobustProblem:
    """Cost and exact gradient of robust objectives on scenario matrices.

    ``rows`` maps structure names to rows of ``matrices`` (see
    :meth:`ScenarioMatrices.rows_of`), usually after overlap resolution.  With ``nominal`` (a
    :class:`~protonpath.planning.blocks.BlockRows` of the nominal scenario on other voxels,
    e.g. the external contour's) and ``nominal_rows`` (structure rows in it), the objectives
    scored on the nominal scenario only use that matrix, so the scenario matrices need only
    the rows of robust objectives (and those to evaluate).
    """

    def __init__(
        self,
        matrices: ScenarioMatrices,
        objectives,
        rows: dict[str, np.ndarray],
        nominal=None,
        nominal_rows: dict[str, np.ndarray] | None = None,
        row_scale: np.ndarray | None = None,
    ):
        if (nominal is None) != (nominal_rows is None):
            raise ValueError("a separate nominal matrix needs its rows (and the other way)")
        self.matrices = matrices
        self.nominal = nominal
        self.nominal_rows = nominal_rows

        def rows_for(ro):
            if nominal is not None and ro.robustness == NOMINAL:
                return nominal_rows[ro.objective.structure]
            return rows[ro.objective.structure]

        self.objectives = [o for o in as_robust(objectives) if len(rows_for(o))]
        self.rows = rows
        self.n_s = n_s = len(matrices.scenarios)
        self.p = matrices.scenarios.weights
        # rows each scenario's dose is needed on (shared rows numbering)
        used = [np.zeros(len(matrices.voxel_indices), dtype=bool) for _ in range(n_s)]
        for ro in self.objectives:
            if ro.robustness == NOMINAL and nominal is not None:
                continue
            r = rows[ro.objective.structure]
            for s in range(n_s) if ro.robustness != NOMINAL else (0,):
                used[s][r] = True
        self.used = [np.flatnonzero(u).astype(np.uint64) for u in used]
        # the same rows in the stacked matrix: one product for all scenarios
        n_rows = len(matrices.voxel_indices)
        self.stacked_rows = np.concatenate(
            [u + np.uint64(s * n_rows) for s, u in enumerate(self.used)]
        ).astype(np.uint64)
        self.splits = np.cumsum([len(u) for u in self.used])[:-1]
        # position of each row among a scenario's used rows
        self.position = []
        for u in used:
            pos = np.full(len(u), -1, dtype=np.int64)
            pos[u] = np.arange(np.count_nonzero(u))
            self.position.append(pos)
        if nominal is not None:  # the nominal matrix is one more dose vector, after the others
            u = np.zeros(nominal.shape[0], dtype=bool)
            for ro in self.objectives:
                if ro.robustness == NOMINAL:
                    u[nominal_rows[ro.objective.structure]] = True
            self.nominal_used = np.flatnonzero(u).astype(np.uint64)
            pos = np.full(len(u), -1, dtype=np.int64)
            pos[u] = np.arange(np.count_nonzero(u))
            self.position.append(pos)
        # a dose correction per row of the scenario matrices (e.g. the lateral halo's, see
        # robust_plan.halo_correction), applied to every scenario's dose and to its gradient
        self.row_scale = None
        if row_scale is not None:
            row_scale = np.asarray(row_scale, dtype=np.float64)
            if row_scale.shape != (len(matrices.voxel_indices),):
                raise ValueError("row_scale needs one factor per row of the scenario matrices")
            self.row_scale = [row_scale[u] for u in self.used]
        self.n_evaluations = 0

    @property
    def has_composite(self) -> bool:
        return any(o.robustness == COMPOSITE_WORST_CASE for o in self.objectives)

    def scenario_doses(self, w: np.ndarray) -> list[np.ndarray]:
        """Each scenario's dose on its used rows."""
        doses = np.split(self.matrices.stacked.matvec(w, self.stacked_rows), self.splits)
        if self.row_scale is not None:
            doses = [d * f for d, f in zip(doses, self.row_scale, strict=True)]
        if self.nominal is not None:
            doses.append(self.nominal.matvec(w, self.nominal_used))
        return doses

    def _terms(self, doses, temperature: float | None, want_grad: bool):
        n_s = self.n_s
        grads = [np.zeros_like(d) for d in doses] if want_grad else None
        other = 0.0
        composite = np.zeros(n_s)
        comp_grads: list[list] = [[] for _ in range(n_s)]
        for ro in self.objectives:
            o, r = ro.objective, self.rows[ro.objective.structure]
            n = len(r)
            if ro.robustness == NOMINAL:
                k = 0 if self.nominal is None else n_s  # which dose vector
                if self.nominal is not None:
                    r = self.nominal_rows[o.structure]
                    n = len(r)
                p = self.position[k][r]
                f, g = objective_value_and_gradient(o, doses[k][p], n)
                other += f
                if want_grad:
                    grads[k][p] += g
            elif ro.robustness == STOCHASTIC:
                for s in range(n_s):
                    p = self.position[s][r]
                    f, g = objective_value_and_gradient(o, doses[s][p], n)
                    other += self.p[s] * f
                    if want_grad:
                        grads[s][p] += self.p[s] * g
            elif ro.robustness == VOXEL_WORST_CASE:
                pos = [self.position[s][r] for s in range(n_s)]
                stack = np.stack([doses[s][pos[s]] for s in range(n_s)])
                idx = _worst_index(o, stack)
                worst = stack[idx, np.arange(n)]
                f, g = objective_value_and_gradient(o, worst, n)
                other += f
                if want_grad:
                    for s in range(n_s):
                        on = idx == s
                        if on.any():
                            grads[s][pos[s][on]] += g[on]
            else:
                for s in range(n_s):
                    p = self.position[s][r]
                    f, g = objective_value_and_gradient(o, doses[s][p], n)
                    composite[s] += f
                    if want_grad:
                        comp_grads[s].append((p, g))
        share = np.zeros(n_s)
        if self.has_composite:
            top = composite.max()
            if temperature:
                z = np.exp((composite - top) / temperature)
                share = z / z.sum()
                smooth = top + temperature * np.log(z.sum())
            else:
                share[int(np.argmax(composite))] = 1.0
                smooth = top
            if want_grad:
                for s in range(n_s):
                    if share[s] > 0:
                        for p, g in comp_grads[s]:
                            grads[s][p] += share[s] * g
        else:
            smooth = 0.0
        return other, composite, smooth, grads, share

    def value(self, w: np.ndarray) -> RobustValue:
        """The exact cost (hard maximum) of weights ``w``."""
        other, composite, smooth, _, _ = self._terms(self.scenario_doses(w), None, False)
        return RobustValue(
            float(other + smooth), composite if self.has_composite else np.zeros(0), float(other)
        )

    def _gradient(self, grads) -> np.ndarray:
        total = np.zeros(self.matrices.n_spots)
        if self.nominal is not None:
            g = grads[self.n_s]
            active = np.flatnonzero(g)
            if len(active):
                total += self.nominal.rmatvec(g[active], self.nominal_used[active])
        parts = grads[: self.n_s]
        if self.row_scale is not None:
            parts = [g * f for g, f in zip(parts, self.row_scale, strict=True)]
        g = np.concatenate(parts)
        active = np.flatnonzero(g)
        if len(active):
            total += self.matrices.stacked.rmatvec(g[active], self.stacked_rows[active])
        return total

    def __call__(self, w: np.ndarray, temperature: float | None = None):
        """Cost with the composite maximum smoothed at ``temperature`` (``None``: hard
        maximum, gradient of its largest scenario) and its exact gradient."""
        self.n_evaluations += 1
        other, _, smooth, grads, _ = self._terms(self.scenario_doses(w), temperature, True)
        return float(other + smooth), self._gradient(grads)

    def parts(self, w: np.ndarray):
        """``(other, grad_other, F_s, grad F_s per scenario)`` for the epigraph form."""
        self.n_evaluations += 1
        doses = self.scenario_doses(w)
        saved = [o for o in self.objectives]
        try:
            self.objectives = [o for o in saved if o.robustness != COMPOSITE_WORST_CASE]
            other, _, _, grads, _ = self._terms(doses, None, True)
            g_other = self._gradient(grads)
            comps, g_comps = [], []
            composite_only = [o for o in saved if o.robustness == COMPOSITE_WORST_CASE]
            for s in range(self.n_s):
                self.objectives = composite_only
                f_s, g_s = 0.0, [np.zeros_like(d) for d in doses]
                for ro in composite_only:
                    r = self.rows[ro.objective.structure]
                    p = self.position[s][r]
                    f, g = objective_value_and_gradient(ro.objective, doses[s][p], len(r))
                    f_s += f
                    g_s[s][p] += g
                comps.append(f_s)
                g_comps.append(self._gradient(g_s))
        finally:
            self.objectives = saved
        return other, g_other, np.array(comps), g_comps


@dataclass(frozen=True)
class RobustOptimisationResult:
    """Optimised weights, their exact cost and how the optimiser ended."""

    weights: np.ndarray
    objective: float
    worst_composite: float | None
    composite: np.ndarray
    iterations: int
    evaluations: int
    method: str
    message: str
    history: list  # (seconds, exact cost) after each stage or iteration batch

    def to_dict(self) -> dict:
        return {
            "objective": self.objective,
            "worst_composite": self.worst_composite,
            "iterations": self.iterations,
            "evaluations": self.evaluations,
            "method": self.method,
            "message": self.message,
        }


#: Temperatures of the smoothed maximum, relative to the composite maximum at each stage's
#: start, and the share of the iterations each stage gets.
STAGES = ((0.05, 0.2), (0.01, 0.3), (0.002, 0.5))


def optimise_robust(
    matrices: ScenarioMatrices,
    objectives,
    rows: dict[str, np.ndarray],
    *,
    initial: np.ndarray | None = None,
    max_iterations: int = 300,
    tolerance: float = 1e-6,
    method: str = SMOOTH_MAX,
    callback: Callable[[int], None] | None = None,
    nominal=None,
    nominal_rows: dict[str, np.ndarray] | None = None,
    row_scale: np.ndarray | None = None,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> RobustOptimisationResult:
    """Non-negative spot weights minimising robust objectives over scenario matrices.

    Parameters
    ----------
    matrices : ScenarioMatrices
        Every scenario's dose matrix (nominal first).
    objectives : sequence of RobustObjective or Objective
        Plain objectives are nominal.
    rows : dict of str to ndarray
        Rows of each structure in ``matrices``.
    initial : ndarray, optional
        Starting weights (e.g. the nominal plan's); default: uniform weights giving the first
        target objective's dose on the nominal scenario.
    max_iterations : int
        Iterations in all (L-BFGS-B iterations over all stages, or SLSQP iterations).
    method : str
        :data:`SMOOTH_MAX` or :data:`EPIGRAPH`.
    nominal, nominal_rows : BlockRows and dict, optional
        A nominal-scenario matrix for the objectives scored on the nominal scenario only, and
        structure rows in it (see :class:`RobustProblem`).
    row_scale : ndarray, optional
        A dose correction factor per row of ``matrices`` (see :class:`RobustProblem`).
    lower, upper : ndarray, optional
        Bounds per spot (default 0 and none), e.g. the minimum-MU re-optimisation's
        ``[minimum, maximum]`` with ``0, 0`` for the spots it removed.
    """
    import time

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    problem = RobustProblem(matrices, objectives, rows, nominal, nominal_rows, row_scale)
    if not problem.objectives:
        raise ValueError("no objective acts on a voxel of the scenario matrices")
    n = matrices.n_spots
    if initial is None:
        ro = next(
            (
                o
                for o in problem.objectives
                if o.objective.kind in (SQUARED_DEVIATION, SQUARED_UNDERDOSE)
            ),
            problem.objectives[0],
        )
        r = rows[ro.objective.structure]
        mean = matrices.blocks[0].matvec(np.ones(n))[r].mean() if len(r) else 0.0
        initial = np.ones(n) * ((ro.objective.dose_gy or 1.0) / mean if mean > 0 else 1.0)
    lo = np.zeros(n) if lower is None else np.broadcast_to(np.asarray(lower, float), (n,)).copy()
    hi = (
        np.full(n, np.inf)
        if upper is None
        else np.broadcast_to(np.asarray(upper, float), (n,)).copy()
    )
    if np.any(lo < 0) or np.any(hi < lo):
        raise ValueError("spot bounds need 0 <= lower <= upper")
    w = np.clip(np.asarray(initial, dtype=np.float64), lo, hi)
    start = problem.value(w).total
    scale = 1e6 / start if start > 0 else 1.0
    t0 = time.perf_counter()
    history = [(0.0, start)]
    iterations = 0
    message = ""
    bounds = optimize.Bounds(lo, hi)

    def on_iteration(*_):
        nonlocal iterations
        iterations += 1
        if callback is not None:
            callback(iterations)

    # as many product threads as the CPUs other processes leave free (see threads.py)
    with threadpool_limits(limits=1, user_api="blas"), fitted_threads():
        if method == SMOOTH_MAX:
            stages = STAGES if problem.has_composite else ((None, 1.0),)
            for relative, share in stages:
                budget = max(int(round(share * max_iterations)), 1)
                if iterations >= max_iterations:
                    break
                budget = min(budget, max_iterations - iterations)
                if relative is None:
                    temperature = None
                else:
                    comp = problem.value(w).composite
                    temperature = max(relative * float(comp.max()), 1e-12)

                def fun(x, temperature=temperature):
                    f, g = problem(x, temperature)
                    return f * scale, g * scale

                res = optimize.minimize(
                    fun,
                    w,
                    jac=True,
                    method="L-BFGS-B",
                    bounds=bounds,
                    tol=tolerance,
                    options={"maxiter": budget},
                    callback=on_iteration,
                )
                w = np.clip(res.x, lo, hi)
                message = str(res.message)
                history.append((time.perf_counter() - t0, problem.value(w).total))
        else:
            # SLSQP's steps are not scale-free like L-BFGS-B's: the cost starts at 1 here
            w, message = _epigraph(
                problem, w, scale * 1e-6, max_iterations, tolerance, on_iteration, lo, hi
            )
            history.append((time.perf_counter() - t0, problem.value(w).total))
    final = problem.value(w)
    return RobustOptimisationResult(
        w,
        final.total,
        float(final.composite.max()) if len(final.composite) else None,
        final.composite,
        iterations,
        problem.n_evaluations,
        method,
        message,
        history,
    )


def _epigraph(problem: RobustProblem, w, scale, max_iterations, tolerance, on_iteration, lo, hi):
    """``min other(w) + t`` subject to ``t >= F_s(w)`` for every scenario, ``w >= 0``, by SLSQP
    on ``x = (w, t)``."""
    n = len(w)
    cache: dict = {}

    def parts(x):
        key = x.tobytes()
        if cache.get("key") != key:
            cache["key"] = key
            cache["value"] = problem.parts(x[:n])
        return cache["value"]

    def fun(x):
        other, g_other, _, _ = parts(x)
        return (other + x[n]) * scale, np.append(g_other, 1.0) * scale

    def cons(x):
        _, _, comps, _ = parts(x)
        return (x[n] - comps) * scale

    def cons_jac(x):
        _, _, _, g_comps = parts(x)
        jac = np.empty((len(g_comps), n + 1))
        for s, g in enumerate(g_comps):
            jac[s, :n] = -g * scale
            jac[s, n] = scale
        return jac

    _, _, comps, _ = problem.parts(w)
    x0 = np.append(w, comps.max() if len(comps) else 0.0)
    bounds = [(a, None if np.isinf(b) else b) for a, b in zip(lo, hi, strict=True)]
    bounds.append((None, None))
    res = optimize.minimize(
        fun,
        x0,
        jac=True,
        method="SLSQP",
        bounds=bounds,
        constraints=[{"type": "ineq", "fun": cons, "jac": cons_jac}] if len(comps) else [],
        tol=tolerance,
        options={"maxiter": max_iterations},
        callback=on_iteration,
    )
    return np.clip(res.x[:n], lo, hi), str(res.message)
