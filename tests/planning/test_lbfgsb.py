"""protonpath's L-BFGS-B (planning.lbfgsb) against known minimisers, SciPy and the KKT
conditions; its line search, middle matrix and free-variable Gram matrices on their own."""

import numpy as np
import pytest
from scipy import optimize

from protonpath.planning import lbfgsb


def scipys(fun, x0, bounds, **options):
    """SciPy's L-BFGS-B on the same problem: the reference."""
    return optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=options)


def least_squares(seed=0, rows=120, n=60):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(rows, n))
    b = rng.normal(size=rows)

    def fun(x):
        r = a @ x - b
        return 0.5 * float(r @ r), a.T @ r

    return a, b, fun


def rosenbrock(x):
    return float(optimize.rosen(x)), optimize.rosen_der(x)


def kkt_violation(x, g, lo, hi):
    """Largest violation of the bound-constrained first-order conditions."""
    worst = 0.0
    for xi, gi, li, ui in zip(x, g, lo, hi, strict=True):
        if xi <= li:
            worst = max(worst, -gi)  # at the lower bound the gradient points up
        elif xi >= ui:
            worst = max(worst, gi)
        else:
            worst = max(worst, abs(gi))
    return worst


class Recorder:
    """The objective, recording every point it is asked for."""

    def __init__(self, fun):
        self.fun, self.points = fun, []

    def __call__(self, x):
        self.points.append(np.array(x))
        return self.fun(x)


def test_non_negative_least_squares_reaches_the_nnls_optimum():
    a, b, fun = least_squares()
    res = lbfgsb.minimize(fun, np.zeros(a.shape[1]), pgtol=1e-10, ftol=0.0)
    x_ref, r_norm = optimize.nnls(a, b)
    assert res.fun == pytest.approx(0.5 * r_norm**2, rel=1e-10)
    assert np.allclose(res.x, x_ref, atol=1e-6)
    assert np.count_nonzero(x_ref == 0.0) > 10  # the bounds are active
    assert np.count_nonzero(res.x == 0.0) == np.count_nonzero(x_ref == 0.0)
    n = a.shape[1]
    # 1e-7: f is then at its rounding limit
    assert kkt_violation(res.x, res.jac, np.zeros(n), np.full(n, np.inf)) <= 1e-7


def test_box_constrained_quadratic_meets_the_kkt_conditions_and_scipy():
    rng = np.random.default_rng(3)
    n = 80
    q = rng.normal(size=(n, n))
    hess = q @ q.T / n + 0.05 * np.eye(n)
    c = rng.normal(size=n) * 3.0
    lo = rng.uniform(-1.0, 0.0, size=n)
    hi = lo + rng.uniform(0.2, 1.5, size=n)
    lo[:5], hi[5:10] = -np.inf, np.inf  # some one-sided

    def fun(x):
        return 0.5 * float(x @ hess @ x) + float(c @ x), hess @ x + c

    recorder = Recorder(fun)
    res = lbfgsb.minimize(recorder, np.zeros(n), lo, hi, pgtol=1e-10, ftol=0.0)
    ref = scipys(
        fun, np.zeros(n), list(zip(lo, hi, strict=True)), gtol=1e-9, ftol=1e-15, maxiter=10000
    )
    assert res.fun <= ref.fun + 1e-12 * abs(ref.fun)
    assert np.allclose(res.x, ref.x, atol=1e-5)
    at_bounds = np.count_nonzero((res.x <= lo) | (res.x >= hi))
    assert at_bounds > 10
    assert kkt_violation(res.x, res.jac, lo, hi) <= 1e-7  # f at its rounding limit
    points = np.array(recorder.points)
    assert np.all(points >= lo) and np.all(points <= hi)  # never outside the box


def test_rosenbrock_with_bounds_matches_scipy():
    n = 10
    lo, hi = np.full(n, -2.0), np.full(n, 0.5)
    x0 = np.full(n, -1.0)
    res = lbfgsb.minimize(rosenbrock, x0, lo, hi, pgtol=1e-10, ftol=0.0)
    ref = scipys(rosenbrock, x0, list(zip(lo, hi, strict=True)), gtol=1e-9, ftol=1e-15)
    assert res.fun == pytest.approx(ref.fun, rel=1e-8)
    assert np.allclose(res.x, ref.x, atol=1e-6)
    assert res.x[0] == 0.5  # the upper bound is active
    assert kkt_violation(res.x, res.jac, lo, hi) <= 1e-7  # f at its rounding limit


def test_unbounded_rosenbrock_reaches_its_minimiser():
    res = lbfgsb.minimize(rosenbrock, np.full(6, -1.2), None, None, pgtol=1e-10, ftol=0.0)
    assert res.success
    assert np.allclose(res.x, 1.0, atol=1e-6)
    assert res.fun < 1e-12


def test_start_outside_the_box_is_projected_and_bounds_are_checked():
    _, _, fun = least_squares(1, 50, 20)
    recorder = Recorder(fun)
    res = lbfgsb.minimize(recorder, np.full(20, -5.0), maxiter=3)
    assert np.all(recorder.points[0] == 0.0)
    assert res.nit == 3 and res.message == "iteration limit reached" and not res.success
    assert res.nfev == len(recorder.points)
    with pytest.raises(ValueError):
        lbfgsb.minimize(fun, np.zeros(20), np.ones(20), np.zeros(20))


def test_callback_sees_every_iteration_and_can_stop_the_run():
    _, _, fun = least_squares(2)
    seen = []

    def callback(it):
        seen.append((it.nit, it.fun, fun(it.x)[0]))
        if it.nit == 7:
            raise StopIteration

    res = lbfgsb.minimize(fun, np.zeros(60), callback=callback)
    assert [s[0] for s in seen] == list(range(1, 8))
    assert all(f == pytest.approx(f_at_x) for _, f, f_at_x in seen)
    assert [s[1] for s in seen] == sorted((s[1] for s in seen), reverse=True)  # descent
    assert res.nit == 7 and not res.success and res.message == "stopped by the callback"
    assert res.fun == seen[-1][1]


def test_replacing_the_objective_by_itself_keeps_the_memory_and_the_path():
    """A restart would drop the curvature pairs and change the iterates; the memory kept, a
    replacement by the same function changes only the evaluation count."""
    _, _, fun = least_squares(4)
    plain = lbfgsb.minimize(fun, np.zeros(60), maxiter=15, ftol=0.0, pgtol=0.0)

    def callback(it):
        return (lambda x: fun(x)) if it.nit in (3, 11) else None

    replaced = lbfgsb.minimize(
        fun, np.zeros(60), maxiter=15, ftol=0.0, pgtol=0.0, callback=callback
    )
    assert replaced.nit == plain.nit == 15
    assert replaced.nfev == plain.nfev + 2
    assert np.array_equal(replaced.x, plain.x)


def test_a_replacement_with_its_value_and_gradient_costs_no_evaluation():
    _, _, fun = least_squares(4)
    plain = lbfgsb.minimize(fun, np.zeros(60), maxiter=15, ftol=0.0, pgtol=0.0)

    def callback(it):
        if it.nit in (3, 11):
            f, g = fun(it.x)
            assert f == it.fun and np.array_equal(g, it.jac)
            return fun, f, g
        return None

    replaced = lbfgsb.minimize(
        fun, np.zeros(60), maxiter=15, ftol=0.0, pgtol=0.0, callback=callback
    )
    assert replaced.nfev == plain.nfev
    assert np.array_equal(replaced.x, plain.x)


def test_a_new_objective_mid_run_is_minimised_from_where_the_run_is():
    a, b, fun = least_squares(5)
    b2 = b + 1.0

    def fun2(x):
        r = a @ x - b2
        return 0.5 * float(r @ r), a.T @ r

    seen = []

    def callback(it):
        seen.append(it.nit)
        return fun2 if it.nit == 5 else None

    res = lbfgsb.minimize(fun, np.zeros(60), pgtol=1e-10, ftol=1e-15, callback=callback)
    x_ref, r_norm = optimize.nnls(a, b2)
    assert res.success and res.nit > 5
    assert res.fun == pytest.approx(0.5 * r_norm**2, rel=1e-9)
    assert np.allclose(res.x, x_ref, atol=1e-6)
    assert seen == list(range(1, res.nit + 1))


def test_on_converged_can_go_on_with_another_objective():
    a, b, fun = least_squares(6)

    def fun2(x):
        r = a @ x - 2.0 * b
        return 0.5 * float(r @ r), a.T @ r

    calls = []

    def on_converged(it):
        calls.append(it.nit)
        return fun2 if len(calls) == 1 else None

    res = lbfgsb.minimize(fun, np.zeros(60), pgtol=1e-10, ftol=1e-15, on_converged=on_converged)
    assert len(calls) == 2 and calls[0] < calls[1] == res.nit
    assert res.fun == pytest.approx(0.5 * optimize.nnls(a, 2.0 * b)[1] ** 2, rel=1e-9)


def test_relative_reduction_stop_as_scipy_ftol():
    _, _, fun = least_squares(7)
    res = lbfgsb.minimize(fun, np.zeros(60), ftol=1e-3, pgtol=0.0)
    ref = scipys(fun, np.zeros(60), [(0, None)] * 60, ftol=1e-3, gtol=0.0)
    assert res.success and res.message == "relative reduction of f at most ftol"
    assert abs(res.nit - ref.nit) <= 2
    assert res.fun == pytest.approx(ref.fun, rel=1e-3)


@pytest.mark.parametrize(
    "phi",
    [
        lambda t: (-t / (t * t + 2.0), (t * t - 2.0) / (t * t + 2.0) ** 2),
        lambda t: (0.5 * (t - 30.0) ** 2, t - 30.0),
        lambda t: (np.exp(-t) + 1e-3 * t * t, -np.exp(-t) + 2e-3 * t),
    ],
)
@pytest.mark.parametrize("start", [1e-3, 1.0, 100.0])
def test_line_search_meets_the_strong_wolfe_conditions(phi, start):
    f0, g0 = phi(0.0)
    assert g0 < 0
    ls = np.zeros(lbfgsb._LS_SIZE)
    stpmax = 1e10
    lbfgsb._ls_start(ls, start, f0, g0, stpmax)
    stp = start
    for _ in range(60):
        f, g = phi(stp)
        answer, new = lbfgsb._ls_update(ls, stp, f, g)
        if answer == lbfgsb.LS_DONE:
            break
        stp = new
    else:
        pytest.fail("no step accepted")
    assert new == stp
    assert f <= f0 + lbfgsb.LS_FTOL * stp * g0
    assert abs(g) <= lbfgsb.LS_GTOL * abs(g0)


def test_middle_matrix_is_the_inverse_of_the_compact_forms_matrix():
    rng = np.random.default_rng(8)
    m, n, k = 6, 40, 5
    s = rng.normal(size=(m, n))
    y = s @ np.diag(rng.uniform(0.5, 2.0, n)) + 0.1 * rng.normal(size=(m, n))
    order = np.array([3, 0, 5, 1, 4, 2])  # ring slots in age order
    ss, sy = s @ s.T, s @ y.T  # sy[i, j] = s_i . y_j by slot
    theta = 1.7
    so, yo = s[order[:k]], y[order[:k]]
    sy_age = so @ yo.T
    big = np.block(
        [
            [-np.diag(np.diag(sy_age)), np.tril(sy_age, -1).T],
            [np.tril(sy_age, -1), theta * so @ so.T],
        ]
    )
    mid = lbfgsb._middle(ss, sy, order, k, theta)
    assert np.allclose(mid, np.linalg.inv(big), rtol=1e-9, atol=1e-9)


def test_free_gram_matrices_follow_the_free_set():
    rng = np.random.default_rng(9)
    m, n = 4, 500
    s, y = rng.normal(size=(m, n)), rng.normal(size=(m, n))
    used = np.array([2, 0, 3, 1])
    fss, fsy, fyy = np.zeros((m, m)), np.zeros((m, m)), np.zeros((m, m))
    fmask = np.zeros(n)  # the matrices are over the empty set: zero
    counts = np.zeros(4, dtype=np.int64)
    free = rng.random(n) < 0.6
    for step in range(6):
        lbfgsb._gram_free(s, y, used, fss, fsy, fyy, fmask, free, counts)
        sf, yf = s * free, y * free
        assert np.allclose(fss, sf @ s.T) and np.allclose(fyy, yf @ y.T)
        assert np.allclose(fsy, sf @ y.T)
        assert np.array_equal(fmask, free.astype(float))
        flip = rng.choice(n, size=3 if step % 2 else 300, replace=False)  # few, or many
        free = free.copy()
        free[flip] = ~free[flip]
    assert counts[2] >= 1  # some recomputed in full, some updated


def test_same_iterates_as_scipy_on_a_bound_constrained_least_squares():
    """The algorithm is SciPy's (BLNZ, Moré-Thuente, its stopping rules): on a small
    problem both take the same number of iterations and evaluations."""
    a, b, fun = least_squares(0, 300, 200)
    res = lbfgsb.minimize(fun, np.zeros(200), pgtol=1e-8, ftol=1e-14)
    ref = scipys(fun, np.zeros(200), [(0, None)] * 200, gtol=1e-8, ftol=1e-14)
    assert res.fun == pytest.approx(ref.fun, rel=1e-12)
    assert abs(res.nit - ref.nit) <= 1
    assert abs(res.nfev - ref.nfev) <= 2


def test_a_wrong_gradient_ends_the_run_without_a_step():
    """The line search finds no decrease along a direction the gradient calls downhill: with
    no memory to drop, the run ends where it started, unsuccessful."""

    def wrong(x):
        return float(x @ x), -2.0 * x  # the gradient of -x.x

    x0 = np.linspace(0.5, 1.5, 8)
    res = lbfgsb.minimize(wrong, x0, -10.0, 10.0)
    assert not res.success
    assert res.message == "the line search found no acceptable point"
    assert res.nit == 0 and np.array_equal(res.x, x0)
    assert 1 < res.nfev <= 1 + lbfgsb.MAX_LINE_SEARCH
