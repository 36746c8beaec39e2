"""Spot-weight optimisation on a water phantom with a cubic target and an organ at risk."""

import numpy as np
import pytest

from protonpath.planning import optimise
from protonpath.planning.optimise import SQUARED_DEVIATION, SQUARED_OVERDOSE, Objective
from protonpath.planning.pipeline import PlanSettings, default_objectives, plan_pbs
from protonpath.planning.raytrace import Beam
from protonpath.planning.resources import load_default_machine

from .conftest import WATER_CALIBRATION

RX = 2.0  # Gy per fraction
#: A target objective with organ limits that bind on the single-beam plan.
BINDING_LIMITS = (
    Objective("PTV", SQUARED_DEVIATION, RX, 1000.0),
    Objective("Rectum", SQUARED_OVERDOSE, 0.3, 300.0),
    Objective("BODY", SQUARED_OVERDOSE, 1.0, 100.0),
)
SETTINGS = PlanSettings(
    dose_grid_mm=4.0, spot_spacing_mm=6.0, layer_spacing_mm=4.0, max_iterations=100
)


def make_plan(case, gantries, objectives, mode="multi"):
    ct, structures = case
    beams = [Beam(g, 0.0, np.array([0.0, 80.0, 0.0])) for g in gantries]
    settings = PlanSettings(**{**SETTINGS.__dict__, "mode": mode})
    return plan_pbs(
        ct,
        structures,
        beams,
        load_default_machine(),
        WATER_CALIBRATION,
        objectives,
        target="PTV",
        prescription_gy=RX,
        settings=settings,
    )


@pytest.fixture(scope="module")
def single_beam_plan(cube_plan_case):
    return make_plan(
        cube_plan_case, [0.0], default_objectives("PTV", RX, ["Rectum"], {"Rectum": 0.1})
    )


def test_single_beam_covers_the_target(single_beam_plan):
    st = single_beam_plan.statistics["PTV"]
    assert st["D95"] > 0.95 * RX
    assert st["D2"] < 1.07 * RX
    assert abs(st["mean"] - RX) < 0.02 * RX
    assert st["V95"] > 0.95


def test_weights_are_non_negative_and_dose_is_their_product(single_beam_plan):
    p = single_beam_plan
    assert np.all(p.weights >= 0)
    assert np.allclose(p.dose_gy, p.dose_matrix.dose_cube(p.weights))


def test_organ_at_risk_objective_lowers_its_dose(cube_plan_case, single_beam_plan):
    without = make_plan(cube_plan_case, [0.0], [Objective("PTV", SQUARED_DEVIATION, RX, 1000.0)])
    rectum_with = single_beam_plan.statistics["Rectum"]["mean"]
    rectum_without = without.statistics["Rectum"]["mean"]
    assert rectum_with < rectum_without
    assert without.statistics["PTV"]["D95"] > 0.95 * RX


@pytest.mark.parametrize("mode", ["multi", "single"])
def test_two_fields_cover_the_target_multi_and_single_field(cube_plan_case, mode):
    plan = make_plan(cube_plan_case, [0.0, 90.0], default_objectives("PTV", RX), mode=mode)
    st = plan.statistics["PTV"]
    # single-field plans are less conformal: each field must be uniform on its own
    assert st["D95"] > (0.94 if mode == "multi" else 0.92) * RX and st["D2"] < 1.08 * RX
    if mode == "single":
        # each field alone delivers about half of the dose
        for b in (0, 1):
            w = np.where(plan.spots.beam_index == b, plan.weights, 0.0)
            alone = plan.dose_matrix.dose_cube(w)
            mask = next(s.mask for s in plan.structures if s.name == "PTV")
            assert abs(alone[mask].mean() - RX / 2) < 0.05 * RX


def test_analytic_gradient_matches_finite_differences(single_beam_plan):
    p = single_beam_plan
    rows = {s.name: p.dose_matrix.rows_of(s.mask) for s in p.structures}
    objectives = [
        Objective("PTV", SQUARED_DEVIATION, RX, 10.0),
        Objective("Rectum", SQUARED_OVERDOSE, 0.5, 3.0),
        Objective("BODY", optimise.SQUARED_UNDERDOSE, 0.2, 1.0),
        Objective("Rectum", optimise.MEAN_DOSE, 0.0, 2.0),
    ]
    problem = optimise._Problem(p.dose_matrix, objectives, rows)
    rng = np.random.default_rng(1)
    w = p.weights * rng.uniform(0.5, 1.5, p.weights.size)
    f0, g = problem(w)
    for k in rng.choice(np.flatnonzero(g != 0), 5, replace=False):
        h = 1e-4 * max(w[k], 1e-3)
        wp, wm = w.copy(), w.copy()
        wp[k] += h
        wm[k] -= h
        fd = (problem(wp)[0] - problem(wm)[0]) / (2 * h)
        assert abs(fd - g[k]) <= 1e-3 * abs(g[k]) + 1e-9


def test_optimising_on_watched_rows_reaches_the_full_problem_optimum(single_beam_plan):
    p = single_beam_plan
    rows = {s.name: p.dose_matrix.rows_of(s.mask) for s in p.structures}
    objectives = BINDING_LIMITS
    watched = optimise.optimise_weights(p.dose_matrix, objectives, rows, max_iterations=120)
    full = optimise.optimise_weights(
        p.dose_matrix, objectives, rows, max_iterations=120, watch_margin=None
    )
    # the reported objective is the full problem's, and both reach the same optimum
    value, _ = optimise._Problem(p.dose_matrix, objectives, rows)(watched.weights)
    assert watched.objective == pytest.approx(value)
    assert watched.objective <= 1.02 * full.objective + 1e-6


def test_rows_that_climb_to_their_limit_join_the_watched_rows(single_beam_plan):
    """Starting from zero weights, no organ voxel is near its limit, so the optimiser starts
    with the target rows only; the organ's voxels must join as the dose rises, or the plan
    would ignore the organ's limit."""
    p = single_beam_plan
    rows = {s.name: p.dose_matrix.rows_of(s.mask) for s in p.structures}
    start = np.zeros(p.dose_matrix.n_spots)
    target_only = [Objective("PTV", SQUARED_DEVIATION, RX, 1000.0)]
    blind = optimise.optimise_weights(
        p.dose_matrix, target_only, rows, initial=start, max_iterations=150
    )

    def organ_dose(weights):
        return p.dose_matrix.dose_cube(weights).ravel()[p.dose_matrix.voxel_indices][rows["Rectum"]]

    limit = 0.5 * organ_dose(blind.weights).max()
    objectives = [*target_only, Objective("Rectum", SQUARED_OVERDOSE, limit, 300.0)]
    res = optimise.optimise_weights(
        p.dose_matrix, objectives, rows, initial=start, max_iterations=150
    )
    every_row = optimise.optimise_weights(
        p.dose_matrix, objectives, rows, initial=start, max_iterations=150, watch_margin=None
    )
    blind_over = np.maximum(organ_dose(blind.weights) - limit, 0.0)
    over = np.maximum(organ_dose(res.weights) - limit, 0.0)
    assert over.mean() < 0.9 * blind_over.mean()
    assert res.objective <= 1.02 * every_row.objective
    # the reported objective is the full problem's
    value, _ = optimise._Problem(p.dose_matrix, objectives, rows)(res.weights)
    assert res.objective == pytest.approx(value)


def test_stop_below_ends_at_the_first_iteration_reaching_that_objective(single_beam_plan):
    p = single_beam_plan
    rows = {s.name: p.dose_matrix.rows_of(s.mask) for s in p.structures}
    objectives = default_objectives("PTV", RX, ["Rectum"], {"Rectum": 0.1})
    start = np.zeros(p.dose_matrix.n_spots)
    values = []
    problem = optimise._Problem(p.dose_matrix, objectives, rows)
    full = optimise.optimise_weights(
        p.dose_matrix, objectives, rows, initial=start, max_iterations=120, tolerance=1e-14
    )
    goal = 1.5 * full.objective
    stopped = optimise.optimise_weights(
        p.dose_matrix,
        objectives,
        rows,
        initial=start,
        max_iterations=120,
        tolerance=1e-14,
        stop_below=goal,
        callback=values.append,
    )
    assert stopped.iterations < full.iterations
    assert values == list(range(1, stopped.iterations + 1))
    assert stopped.objective <= goal
    assert problem(stopped.weights)[0] == pytest.approx(stopped.objective)
    # one iteration less had not reached it
    before = optimise.optimise_weights(
        p.dose_matrix,
        objectives,
        rows,
        initial=start,
        max_iterations=stopped.iterations - 1,
        tolerance=1e-14,
    )
    assert before.objective > goal


def test_blas_threads_are_restored_after_optimising(single_beam_plan):
    from threadpoolctl import threadpool_info

    p = single_beam_plan
    rows = {s.name: p.dose_matrix.rows_of(s.mask) for s in p.structures}
    before = [(i["filepath"], i["num_threads"]) for i in threadpool_info()]
    optimise.optimise_weights(
        p.dose_matrix, [Objective("PTV", SQUARED_DEVIATION, RX, 1.0)], rows, max_iterations=5
    )
    assert [(i["filepath"], i["num_threads"]) for i in threadpool_info()] == before


@pytest.mark.parametrize("iterations", [20, 60, 150])
@pytest.mark.parametrize("watch_margin", [0.8, None])
def test_own_lbfgsb_reaches_scipys_objective(single_beam_plan, iterations, watch_margin):
    """The default optimiser (planning.lbfgsb, memory kept as rows join) against SciPy's
    L-BFGS-B (restarted as rows join), from zero weights with organ limits that bind."""
    p = single_beam_plan
    rows = {s.name: p.dose_matrix.rows_of(s.mask) for s in p.structures}
    objectives = BINDING_LIMITS
    results = {}
    for method in ("lbfgsb", "scipy"):
        seen = []
        results[method] = optimise.optimise_weights(
            p.dose_matrix,
            objectives,
            rows,
            initial=np.zeros(p.dose_matrix.n_spots),
            max_iterations=iterations,
            watch_margin=watch_margin,
            method=method,
            callback=seen.append,
        )
        assert seen == list(range(1, results[method].iterations + 1))
    own, ref = results["lbfgsb"], results["scipy"]
    assert np.all(own.weights >= 0)
    assert own.iterations <= iterations
    assert own.evaluations >= own.iterations
    assert own.objective <= 1.01 * ref.objective + 1e-9
    value, _ = optimise._Problem(p.dose_matrix, objectives, rows)(own.weights)
    assert own.objective == pytest.approx(value)


def test_unknown_optimiser_is_refused(single_beam_plan):
    p = single_beam_plan
    rows = {s.name: p.dose_matrix.rows_of(s.mask) for s in p.structures}
    with pytest.raises(ValueError, match="unknown method"):
        optimise.optimise_weights(
            p.dose_matrix, [Objective("PTV", SQUARED_DEVIATION, RX)], rows, method="newton"
        )


def test_watched_problems_add_up_over_their_rows(single_beam_plan):
    """The own optimiser's value and gradient after rows join: the old watched rows' plus
    the joining rows' (no new evaluation over every watched row)."""
    p = single_beam_plan
    rows = {s.name: p.dose_matrix.rows_of(s.mask) for s in p.structures}
    objectives = BINDING_LIMITS
    sizes = {k: len(r) for k, r in rows.items()}
    n_rows = p.dose_matrix.matrix.shape[0]

    def problem(mask):
        return optimise._watched_problem(p.dose_matrix, objectives, rows, sizes, mask)

    rng = np.random.default_rng(0)
    old = rng.random(n_rows) < 0.5
    joined = ~old & (rng.random(n_rows) < 0.5)
    w = p.weights
    f_old, g_old = problem(old)(w)
    f_joined, g_joined = problem(joined)(w)
    f_new, g_new = problem(old | joined)(w)
    assert f_old + f_joined == pytest.approx(f_new, rel=1e-12)
    assert np.allclose(g_old + g_joined, g_new, rtol=1e-10, atol=1e-12 * np.abs(g_new).max())
