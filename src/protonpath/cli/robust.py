"""Robust planning and robustness evaluation for ``protonpath plan`` (see ``--scenarios``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def robust_objectives(objectives, target: str, target_mode: str, oar_mode: str):
    """The command's objectives with the robustness chosen for the target's and the organs'."""
    from protonpath.planning.robust import RobustObjective

    return [
        RobustObjective(o, target_mode if o.structure == target else oar_mode) for o in objectives
    ]


def evaluate_plan(ct, calibration, plan, machine, scenarios, cut_level, prescription_gy):
    """Robustness evaluation of a nominal :class:`PlanResult` (targets and organs)."""
    from protonpath.planning.ct import hu_to_spr
    from protonpath.planning.robustness import evaluate_robustness, scenario_dose_cubes
    from protonpath.planning.structures import EXTERNAL

    mask = np.zeros(plan.dose_grid.shape, dtype=bool)
    for s in plan.structures:
        if s.role != EXTERNAL:
            mask |= s.mask
    cubes = scenario_dose_cubes(
        hu_to_spr(ct.hu, calibration),
        ct.grid,
        plan.dose_grid,
        mask,
        plan.beams,
        plan.spots,
        plan.weights,
        machine,
        scenarios,
        cut_level,
    )
    return evaluate_robustness(cubes, plan.structures, scenarios, prescription_gy)


def worst_case_table(evaluation, fractions: float, title: str):
    """A rich table of the worst-case goals (whole-course doses: per-fraction doses times
    ``fractions``, times the RBE for a deliverable plan's Gy(RBE))."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("structure", "goal", "nominal", "worst case", "scenario"):
        table.add_column(col, justify="left" if col in ("structure", "scenario") else "right")
    for name, goals in evaluation.worst.items():
        for goal, g in goals.items():
            if goal.startswith("V"):
                nominal, worst = f"{100 * g['nominal']:.1f} %", f"{100 * g['value']:.1f} %"
            else:
                nominal = f"{g['nominal'] * fractions:.2f}"
                worst = f"{g['value'] * fractions:.2f}"
            table.add_row(name, goal, nominal, worst, evaluation.scenarios[g["scenario"]].label)
    return table


def dvh_band_png(
    evaluation, path: Path, fractions: float, prescription_gy: float, unit: str = "Gy"
) -> None:
    """DVH bands (nominal curve, min-max band over scenarios) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for i, band in enumerate(evaluation.bands):
        colour = f"C{i % 10}"
        dose = band.dose_gy * fractions
        ax.fill_between(dose, 100 * band.lower, 100 * band.upper, color=colour, alpha=0.25, lw=0)
        ax.plot(dose, 100 * band.nominal, color=colour, label=band.name)
    ax.axvline(prescription_gy, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(f"Dose ({unit})")
    ax.set_ylabel("Volume (%)")
    ax.set_ylim(0, 102)
    ax.set_xlim(0, None)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right", fontsize=8)
    ax.set_title(f"DVH bands over {len(evaluation.scenarios)} scenarios")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
