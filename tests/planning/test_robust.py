"""Robust optimisation: exact gradients of every robustness (finite differences), both
optimisers, and the proof on a box phantom and on TG119 that a nominally optimised plan loses
target coverage under the 21 scenarios while the robust plan keeps D95 >= 95 %."""

import numpy as np
import pytest
import scipy.sparse as sp

from protonpath.planning import optimise
from protonpath.planning.blocks import BlockRows
from protonpath.planning.ct import Grid, hu_to_spr
from protonpath.planning.optimise import (
    MEAN_DOSE,
    SQUARED_DEVIATION,
    SQUARED_OVERDOSE,
    SQUARED_UNDERDOSE,
    Objective,
)
from protonpath.planning.pipeline import PlanSettings, plan_pbs
from protonpath.planning.raytrace import Beam
from protonpath.planning.resources import load_default_calibration, load_default_machine
from protonpath.planning.robust import (
    COMPOSITE_WORST_CASE,
    EPIGRAPH,
    NOMINAL,
    SMOOTH_MAX,
    STOCHASTIC,
    VOXEL_WORST_CASE,
    RobustObjective,
    RobustProblem,
    optimise_robust,
)
from protonpath.planning.robust_plan import RobustSettings, plan_robust
from protonpath.planning.robustness import evaluate_robustness, scenario_dose_cubes
from protonpath.planning.scenarios import Scenario, ScenarioMatrices, ScenarioSet, scenario_set
from protonpath.planning.structures import EXTERNAL, OAR, TARGET, Structure

from .conftest import WATER_CALIBRATION, water_box
from .test_dicom import downsampled_tg119


def random_case(n_rows=60, n_spots=25, n_scenarios=4, seed=0):
    rng = np.random.default_rng(seed)
    scen = ScenarioSet(
        (Scenario(),) + tuple(Scenario((float(i), 0.0, 0.0)) for i in range(1, n_scenarios))
    )
    blocks = [
        BlockRows.from_matrix(
            sp.random(
                n_rows, n_spots, density=0.4, random_state=rng, format="csc", dtype=np.float32
            )
        )
        for _ in range(n_scenarios)
    ]
    grid = Grid((1, 1, n_rows), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    matrices = ScenarioMatrices(scen, blocks, np.arange(n_rows), grid, n_spots)
    rows = {"T": np.arange(0, n_rows // 2), "O": np.arange(n_rows // 2, n_rows)}
    return matrices, rows


def numeric_gradient(problem, w, temperature, eps=1e-6):
    """Central finite differences of ``problem``'s cost at ``w``."""
    return np.array(
        [
            (problem(w + eps * e, temperature)[0] - problem(w - eps * e, temperature)[0])
            / (2 * eps)
            for e in np.eye(len(w))
        ]
    )


OBJECTIVES = [
    Objective("T", SQUARED_DEVIATION, 2.0, 10.0),
    Objective("T", SQUARED_UNDERDOSE, 2.1, 5.0),
    Objective("O", SQUARED_OVERDOSE, 1.5, 3.0),
    Objective("O", MEAN_DOSE, 0.0, 0.5),
]


@pytest.mark.parametrize(
    "robustness,temperature",
    [
        (NOMINAL, None),
        (STOCHASTIC, None),
        (VOXEL_WORST_CASE, None),
        (COMPOSITE_WORST_CASE, 0.5),
        (COMPOSITE_WORST_CASE, None),
    ],
)
def test_gradient_matches_finite_differences(robustness, temperature):
    matrices, rows = random_case()
    # the organ objectives stay nominal: a mix of robust and nominal terms
    objectives = [
        RobustObjective(o, robustness if o.structure == "T" else NOMINAL) for o in OBJECTIVES
    ]
    objectives.append(RobustObjective(OBJECTIVES[2], robustness))
    problem = RobustProblem(matrices, objectives, rows)
    w = np.random.default_rng(1).uniform(0.05, 0.3, matrices.n_spots)
    f, g = problem(w, temperature)
    assert f > 0 and np.any(g != 0)
    numeric = numeric_gradient(problem, w, temperature)
    assert np.allclose(g, numeric, rtol=1e-4, atol=1e-7 * np.abs(numeric).max())


def test_hard_costs_are_what_each_robustness_means():
    matrices, rows = random_case()
    w = np.random.default_rng(2).uniform(0.05, 0.3, matrices.n_spots)
    doses = [b.matvec(w) for b in matrices.blocks]
    o = Objective("T", SQUARED_UNDERDOSE, 2.1, 1.0)

    def f(d):
        return float(np.mean(np.minimum(d[rows["T"]] - 2.1, 0) ** 2))

    def cost(robustness):
        return RobustProblem(matrices, [RobustObjective(o, robustness)], rows).value(w).total

    assert cost(NOMINAL) == pytest.approx(f(doses[0]))
    assert cost(STOCHASTIC) == pytest.approx(np.mean([f(d) for d in doses]))
    assert cost(COMPOSITE_WORST_CASE) == pytest.approx(max(f(d) for d in doses))
    assert cost(VOXEL_WORST_CASE) == pytest.approx(f(np.min(doses, axis=0)))
    assert cost(VOXEL_WORST_CASE) >= cost(COMPOSITE_WORST_CASE) >= cost(STOCHASTIC)


def test_both_optimisers_lower_the_worst_case():
    matrices, rows = random_case(n_rows=40, n_spots=15)
    objectives = [RobustObjective(o, COMPOSITE_WORST_CASE) for o in OBJECTIVES[:3]]
    start = np.full(matrices.n_spots, 0.2)
    before = RobustProblem(matrices, objectives, rows).value(start).total
    smooth = optimise_robust(matrices, objectives, rows, initial=start, method=SMOOTH_MAX)
    epi = optimise_robust(matrices, objectives, rows, initial=start, method=EPIGRAPH)
    for r in (smooth, epi):
        assert np.all(r.weights >= 0)
        assert r.objective < 0.5 * before
        assert r.worst_composite == pytest.approx(r.composite.max())
    # both reach about the same minimax
    assert smooth.objective == pytest.approx(epi.objective, rel=0.05)


RX = 2.0


@pytest.fixture(scope="module")
def box_case():
    """Water box, a 40 mm cubic target at 60-100 mm depth and an organ 4 mm behind it."""
    ct, body = water_box(half_width_mm=50.0, depth_mm=160.0, spacing_mm=(4.0, 4.0, 4.0))
    x, y, z = ct.grid.axes_mm()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    target = (np.abs(xx) < 20) & (np.abs(zz) < 20) & (yy > 60) & (yy < 100)
    oar = (np.abs(xx) < 20) & (np.abs(zz) < 20) & (yy > 104) & (yy < 120)
    structures = [
        Structure("PTV", target, TARGET),
        Structure("Rectum", oar, OAR),
        Structure("BODY", body, EXTERNAL),
    ]
    return ct, structures


BOX_OBJECTIVES = [
    RobustObjective(Objective("PTV", SQUARED_DEVIATION, RX, 1000.0), VOXEL_WORST_CASE),
    RobustObjective(Objective("Rectum", SQUARED_OVERDOSE, 1.0, 100.0), NOMINAL),
]
# layers 2.5 mm apart: about the 80 % width of the Bragg peak at these depths (4 mm leaves
# a depth-dose ripple that keeps D95 below 95 % in every scenario)
BOX_SETTINGS = PlanSettings(
    dose_grid_mm=4.0, spot_spacing_mm=6.0, layer_spacing_mm=2.5, max_iterations=100
)
# the robust plan's spots reach 3 mm further laterally and 3 mm + 3.5 % of the depth in depth
BOX_ROBUST_SETTINGS = PlanSettings(
    **{
        **BOX_SETTINGS.__dict__,
        "lateral_margin_mm": 9.0,
        "proximal_margin_mm": 7.0,
        "distal_margin_mm": 7.0,
    }
)


@pytest.fixture(scope="module")
def box_plans(box_case):
    ct, structures = box_case
    machine = load_default_machine()
    beams = [Beam(0.0, 0.0, np.array([0.0, 80.0, 0.0]))]
    scenarios = scenario_set()
    nominal = plan_pbs(
        ct,
        structures,
        beams,
        machine,
        WATER_CALIBRATION,
        [ro.objective for ro in BOX_OBJECTIVES],
        target="PTV",
        prescription_gy=RX,
        settings=BOX_SETTINGS,
    )
    interest = np.zeros(nominal.dose_grid.shape, dtype=bool)
    for s in nominal.structures:
        if s.role != EXTERNAL:
            interest |= s.mask
    cubes = scenario_dose_cubes(
        hu_to_spr(ct.hu, WATER_CALIBRATION),
        ct.grid,
        nominal.dose_grid,
        interest,
        beams,
        nominal.spots,
        nominal.weights,
        machine,
        scenarios,
    )
    nominal_eval = evaluate_robustness(cubes, nominal.structures, scenarios, RX)
    robust = plan_robust(
        ct,
        structures,
        beams,
        machine,
        WATER_CALIBRATION,
        BOX_OBJECTIVES,
        target="PTV",
        prescription_gy=RX,
        scenarios=scenarios,
        settings=BOX_ROBUST_SETTINGS,
        robust_settings=RobustSettings(max_iterations=100),
    )
    return nominal, nominal_eval, robust


def test_box_nominal_plan_loses_coverage_and_the_robust_plan_keeps_it(box_plans):
    nominal, nominal_eval, robust = box_plans
    assert nominal.statistics["PTV"]["D95"] > 0.97 * RX  # fine in the nominal scenario
    assert nominal_eval.worst["PTV"]["D95"]["value"] < 0.95 * RX
    assert robust.evaluation.worst["PTV"]["D95"]["value"] >= 0.95 * RX
    assert (
        robust.evaluation.worst["PTV"]["D98"]["value"] > nominal_eval.worst["PTV"]["D98"]["value"]
    )
    # organ doses are reported, in the worst case too
    for e in (nominal_eval, robust.evaluation):
        assert set(e.worst["Rectum"]) == {"D2", "max", "mean"}
        assert e.worst["Rectum"]["D2"]["value"] >= e.worst["Rectum"]["D2"]["nominal"]


def test_evaluation_bands_and_voxel_cubes_bound_every_scenario(box_plans):
    _, _, robust = box_plans
    e = robust.evaluation
    cubes = robust.matrices.dose_cubes(robust.weights)
    assert len(e.per_scenario) == 21
    assert np.allclose(e.min_dose, np.min(cubes, axis=0))
    assert np.allclose(e.max_dose, np.max(cubes, axis=0))
    ptv = next(s for s in robust.nominal.structures if s.name == "PTV")
    assert np.all(e.min_dose[ptv.mask] <= robust.dose_gy[ptv.mask] + 1e-9)
    for band in e.bands:
        assert np.all(band.lower <= band.nominal + 1e-12)
        assert np.all(band.nominal <= band.upper + 1e-12)
        assert band.upper[0] == 1.0
    worst = e.worst["PTV"]["D95"]
    assert worst["value"] == min(st["PTV"]["D95"] for st in e.per_scenario)
    assert e.per_scenario[worst["scenario"]]["PTV"]["D95"] == worst["value"]


def test_scenario_matrices_keep_only_needed_rows_in_float32_blocks(box_plans):
    _, _, robust = box_plans
    mem = robust.matrices.memory
    assert mem["scenarios"] == 21 and len(robust.matrices.blocks) == 21
    assert mem["rows"] < mem["full_rows"] / 5  # the body's rows are not kept
    assert all(b.values.dtype == np.float32 for b in robust.matrices.blocks)
    assert mem["blocks_bytes"] < mem["csr_float64_bytes"]
    # the nominal scenario's matrix is the nominal plan's, on the kept rows
    w = robust.weights
    rows = robust.nominal.dose_matrix.rows_of(
        np.isin(np.arange(robust.matrices.grid.n_voxels), robust.matrices.voxel_indices).reshape(
            robust.matrices.grid.shape
        )
    )
    assert np.allclose(
        robust.matrices.blocks[0].matvec(w), robust.nominal.dose_matrix.matrix[rows] @ w
    )


@pytest.fixture(scope="module")
def tg119_robust(tg119):
    ct, structures = downsampled_tg119(tg119)
    target = next(s for s in structures if s.name == "OuterTarget")
    iso = ct.grid.points_mm(np.flatnonzero(target.mask)).mean(axis=0)
    beams = [Beam(g, 0.0, iso) for g in (0.0, 90.0)]
    # the phantom's objectives on the nominal scenario, and the target's minimum dose (98 %)
    # in the worst case of each voxel
    objectives = [RobustObjective(o) for o in tg119.objectives] + [
        RobustObjective(Objective("OuterTarget", SQUARED_UNDERDOSE, 49.0, 1000.0), VOXEL_WORST_CASE)
    ]
    settings = PlanSettings(
        dose_grid_mm=8.0,
        spot_spacing_mm=6.0,
        layer_spacing_mm=4.0,
        max_iterations=150,
        lateral_margin_mm=9.0,
        proximal_margin_mm=7.0,
        distal_margin_mm=7.0,
    )
    return plan_robust(
        ct,
        structures,
        beams,
        load_default_machine(),
        load_default_calibration(),
        objectives,
        target="OuterTarget",
        prescription_gy=50.0,
        priority=tg119.priority,
        scenarios=scenario_set(),
        settings=settings,
        robust_settings=RobustSettings(max_iterations=120),
    )


def test_tg119_nominal_plan_loses_coverage_and_the_robust_plan_keeps_it(tg119_robust):
    r = tg119_robust
    assert r.nominal.statistics["OuterTarget"]["D95"] > 0.97 * 50
    assert r.nominal_evaluation.worst["OuterTarget"]["D95"]["value"] < 0.95 * 50
    assert r.evaluation.worst["OuterTarget"]["D95"]["value"] >= 0.95 * 50
    core = r.evaluation.worst["Core"]
    assert core["D2"]["value"] > 0 and core["mean"]["value"] < 50
    assert "BODY" not in r.evaluation.worst  # external contours are not evaluated


def test_with_the_nominal_scenario_only_every_robustness_is_the_nominal_objective():
    from protonpath.planning.optimise import _Problem

    matrices, rows = random_case(n_scenarios=1)
    assert len(matrices.scenarios) == 1 and len(scenario_set("nominal")) == 1
    w = np.random.default_rng(3).uniform(0.05, 0.3, matrices.n_spots)
    dense = np.column_stack([matrices.blocks[0].matvec(e) for e in np.eye(matrices.n_spots)])
    nominal_value, nominal_grad = _Problem(sp.csc_matrix(dense), OBJECTIVES, rows)(w)
    for robustness in (NOMINAL, STOCHASTIC, VOXEL_WORST_CASE, COMPOSITE_WORST_CASE):
        f, g = RobustProblem(matrices, [RobustObjective(o, robustness) for o in OBJECTIVES], rows)(
            w
        )
        if robustness == COMPOSITE_WORST_CASE:
            continue  # one composite of all four objectives: same value, checked below
        assert f == pytest.approx(nominal_value, rel=1e-9)
        assert np.allclose(g, nominal_grad, rtol=1e-6)
    composite = RobustProblem(
        matrices, [RobustObjective(o, COMPOSITE_WORST_CASE) for o in OBJECTIVES], rows
    )
    assert composite.value(w).total == pytest.approx(nominal_value, rel=1e-9)


@pytest.mark.parametrize("robustness", [VOXEL_WORST_CASE, COMPOSITE_WORST_CASE, STOCHASTIC])
def test_gradient_with_a_separate_nominal_matrix(robustness):
    """Nominal objectives on their own matrix (other voxels), robust ones on the scenarios."""
    matrices, rows = random_case()
    rng = np.random.default_rng(5)
    nominal = BlockRows.from_matrix(
        sp.random(80, matrices.n_spots, density=0.3, random_state=rng, format="csc")
    )
    nominal_rows = {"T": np.arange(0, 30), "O": np.arange(30, 80)}
    objectives = [RobustObjective(OBJECTIVES[0], robustness)] + [
        RobustObjective(o, NOMINAL) for o in OBJECTIVES[1:]
    ]
    problem = RobustProblem(matrices, objectives, rows, nominal, nominal_rows)
    w = rng.uniform(0.05, 0.3, matrices.n_spots)
    temperature = 0.5 if robustness == COMPOSITE_WORST_CASE else None
    f, g = problem(w, temperature)
    # the nominal terms are those of the nominal matrix
    only_nominal = RobustProblem(matrices, objectives[1:], rows, nominal, nominal_rows)
    dn = nominal.matvec(w)
    expected = sum(
        optimise.objective_value_and_gradient(o, dn[nominal_rows[o.structure]])[0]
        for o in OBJECTIVES[1:]
    )
    assert only_nominal.value(w).total == pytest.approx(expected)
    numeric = numeric_gradient(problem, w, temperature)
    assert np.allclose(g, numeric, rtol=1e-4, atol=1e-7 * np.abs(numeric).max())


@pytest.mark.parametrize("robustness", [VOXEL_WORST_CASE, COMPOSITE_WORST_CASE, STOCHASTIC])
def test_gradient_with_a_dose_correction_per_row(robustness):
    matrices, rows = random_case(seed=3)
    objectives = [RobustObjective(o, robustness) for o in OBJECTIVES]
    scale = np.random.default_rng(4).uniform(0.8, 1.3, len(matrices.voxel_indices))
    problem = RobustProblem(matrices, objectives, rows, row_scale=scale)
    plain = RobustProblem(matrices, objectives, rows)
    w = np.random.default_rng(5).uniform(0.05, 0.3, matrices.n_spots)
    # each scenario's dose is the matrix's times the row's factor
    for d, base, used in zip(
        problem.scenario_doses(w), plain.scenario_doses(w), problem.used, strict=True
    ):
        assert np.allclose(d, base * scale[used])
    temperature = 0.5 if robustness == COMPOSITE_WORST_CASE else None
    f, g = problem(w, temperature)
    numeric = numeric_gradient(problem, w, temperature)
    assert np.allclose(g, numeric, rtol=1e-4, atol=1e-7 * np.abs(numeric).max())
    with pytest.raises(ValueError, match="row_scale"):
        RobustProblem(matrices, objectives, rows, row_scale=scale[:-1])


def test_robust_optimisation_keeps_each_spot_within_its_bounds():
    matrices, rows = random_case(seed=6)
    objectives = [RobustObjective(o, VOXEL_WORST_CASE) for o in OBJECTIVES]
    n = matrices.n_spots
    lower = np.full(n, 0.2)
    upper = np.full(n, 0.6)
    lower[:5] = upper[:5] = 0.0  # removed spots
    for method in (SMOOTH_MAX, EPIGRAPH):
        r = optimise_robust(
            matrices, objectives, rows, max_iterations=60, method=method, lower=lower, upper=upper
        )
        assert np.all(r.weights[:5] == 0)
        assert np.all(r.weights[5:] >= 0.2 - 1e-12) and np.all(r.weights <= 0.6 + 1e-12)
    with pytest.raises(ValueError, match="bounds"):
        optimise_robust(matrices, objectives, rows, lower=upper, upper=lower)


@pytest.fixture(scope="module")
def deliverable_box(box_case):
    """The box's robust plan on the Proteus One with its halo, without spot limits and with a
    minimum weight half the free plan's median spot (so that the step removes and raises
    spots)."""
    from protonpath.planning.proteus_one import build_proteus_one_machine

    ct, structures = box_case
    settings = PlanSettings(**{**BOX_ROBUST_SETTINGS.__dict__, "lateral_model": "halo-depth"})
    objectives = BOX_OBJECTIVES + [
        RobustObjective(Objective("PTV", SQUARED_UNDERDOSE, 0.98 * RX, 1000.0), VOXEL_WORST_CASE)
    ]

    def plan(spot_limits=None):
        return plan_robust(
            ct,
            structures,
            [Beam(0.0, 0.0, np.array([0.0, 80.0, 0.0]))],
            build_proteus_one_machine(),
            WATER_CALIBRATION,
            objectives,
            target="PTV",
            prescription_gy=RX,
            scenarios=scenario_set(),
            settings=settings,
            robust_settings=RobustSettings(max_iterations=100),
            spot_limits=spot_limits,
        )

    free = plan()
    minimum = 0.5 * float(np.median(free.weights[free.weights > 0]))

    def limits(spots):
        return np.full(len(spots), minimum), np.full(len(spots), np.inf)

    return free, plan(limits), minimum


def test_a_robust_plan_with_a_minimum_spot_weight_stays_robust(deliverable_box):
    free, r, minimum = deliverable_box
    on = r.weights > 0
    assert np.all(r.weights[on] >= minimum * (1 - 1e-9))
    d = r.deliverability
    assert d is not None and d.active_after == int(on.sum())
    assert d.removed > 0 and d.raised > 0 and d.active_after < d.active_before
    # the step re-optimised the robust objectives: the worst case stays where it was
    worst = r.evaluation.worst["PTV"]["D95"]["value"]
    assert worst >= 0.99 * free.evaluation.worst["PTV"]["D95"]["value"]
    assert worst > r.nominal_evaluation.worst["PTV"]["D95"]["value"]
    assert free.deliverability is None


def test_a_halo_plan_evaluates_its_scenarios_with_the_halo_correction(deliverable_box):
    r = deliverable_box[1]
    assert r.row_scale is not None and r.row_scale.shape == r.matrices.voxel_indices.shape
    # in the target the halo lowers the core Gaussian's dose by a few per cent
    ptv = next(s for s in r.nominal.structures if s.name == "PTV")
    in_ptv = ptv.mask.ravel()[r.matrices.voxel_indices]
    assert 0.9 < np.median(r.row_scale[in_ptv]) < 1.0
    cubes = r.scenario_dose_cubes(r.weights)
    # the nominal scenario is the plan's own (halo) dose; the others are corrected core doses
    assert np.allclose(cubes[0], r.dose_gy)
    raw = r.matrices.dose_cubes(r.weights)
    flat = cubes[1].ravel()[r.matrices.voxel_indices]
    assert np.allclose(flat, raw[1].ravel()[r.matrices.voxel_indices] * r.row_scale)
    assert np.allclose(r.evaluation.min_dose, np.min(cubes, axis=0))
