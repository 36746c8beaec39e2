"""The non-negative L-BFGS-B against SciPy's and against the optimality conditions."""

import numpy as np
import pytest
from scipy import optimize

from protonpath.planning import lbfgsb


def least_squares(seed: int, rows: int = 300, cols: int = 120):
    """A non-negative least-squares problem whose optimum has many variables at 0, like spot
    weights: ``f = |A x - b|^2`` with ``A >= 0`` of spread column scales."""
    rng = np.random.default_rng(seed)
    a = rng.random((rows, cols)) ** 3 * rng.uniform(0.1, 10.0, cols)
    truth = np.where(rng.random(cols) < 0.5, rng.random(cols), 0.0)
    b = a @ truth + rng.normal(0, 0.5, rows)

    def fun(x):
        r = a @ x - b
        return float(r @ r), 2.0 * a.T @ r

    return a, b, fun


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reaches_the_non_negative_least_squares_optimum(seed):
    a, b, fun = least_squares(seed)
    exact, _ = optimize.nnls(a, b)
    best = fun(exact)[0]
    res = lbfgsb.minimize_nonnegative(fun, np.zeros(a.shape[1]), maxiter=2000, ftol=1e-15, gtol=1e-8)
    assert res.success, res.message
    assert np.all(res.x >= 0.0)
    assert res.fun == pytest.approx(best, rel=1e-6)
    # the optimality (KKT) conditions: no gradient on free variables, none pointing down at 0
    _, g = fun(res.x)
    scale = np.abs(g).max() + 1.0
    free = res.x > 1e-8
    assert np.all(np.abs(g[free]) <= 1e-4 * scale)
    assert np.all(g[~free] >= -1e-4 * scale)
    assert 0.2 < np.mean(~free) < 0.9  # the bounds are active: the test is not unconstrained


@pytest.mark.parametrize("seed", [4, 5])
def test_needs_no_more_iterations_than_scipy_for_the_same_objective(seed):
    a, b, fun = least_squares(seed, rows=400, cols=200)
    x0 = np.zeros(a.shape[1])
    theirs = optimize.minimize(
        fun, x0, jac=True, method="L-BFGS-B", bounds=optimize.Bounds(0, np.inf),
        options={"maxiter": 60},
    )
    goal = theirs.fun

    def stop(it):
        if it.fun <= goal:
            raise StopIteration

    ours = lbfgsb.minimize_nonnegative(fun, x0, m=10, maxiter=200, ftol=0, gtol=0, callback=stop)
    assert ours.fun <= goal
    assert ours.nit <= 1.3 * theirs.nit + 2  # 63 and 72 against 60 when written


def test_callback_sees_each_iteration_and_can_stop_the_run():
    a, b, fun = least_squares(6)
    seen = []

    def callback(it):
        seen.append(it.fun)
        assert np.all(it.x >= 0.0)
        if len(seen) == 7:
            raise StopIteration

    res = lbfgsb.minimize_nonnegative(fun, np.ones(a.shape[1]), callback=callback)
    assert res.nit == 7 and len(seen) == 7
    assert not res.success
    assert res.fun == seen[-1]
    assert all(later <= earlier for earlier, later in zip(seen, seen[1:], strict=False))
    capped = lbfgsb.minimize_nonnegative(fun, np.ones(a.shape[1]), maxiter=3)
    assert capped.nit == 3 and capped.message == "iteration limit reached"


def test_a_start_below_zero_is_projected_and_an_optimum_at_zero_is_found():
    # f = sum((x + 1)^2): the optimum over x >= 0 is x = 0, every gradient component positive
    def fun(x):
        return float(((x + 1.0) ** 2).sum()), 2.0 * (x + 1.0)

    res = lbfgsb.minimize_nonnegative(fun, np.array([-3.0, 2.0, 0.5]))
    assert res.success
    np.testing.assert_array_equal(res.x, 0.0)
    assert res.fun == pytest.approx(3.0)


def test_memory_keeps_its_free_variable_gram_matrices_up_to_date():
    """The Gram matrices over the free variables, updated as variables enter and leave the set
    and as pairs come and go, equal the ones computed from scratch."""
    rng = np.random.default_rng(8)
    n = 50
    memory = lbfgsb._Memory(n, m=4)
    free = rng.random(n) < 0.5
    for step in range(12):
        s, y = rng.normal(size=n), rng.normal(size=n)
        memory.add(s, y, float(s @ y) if s @ y > 0 else 1.0)
        free = np.where(rng.random(n) < 0.1, ~free, free)  # a few variables change side
        got = memory.gram_over(free)
        k, theta = memory.k, memory.theta
        w = np.hstack([memory.y.T, theta * memory.s.T])[free]
        np.testing.assert_allclose(got, w.T @ w, rtol=1e-10, atol=1e-10)
    assert memory.k == 4
