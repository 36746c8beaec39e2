"""Robustness evaluation of a plan: its dose in every scenario and what it means clinically.

:func:`evaluate_robustness` takes one dose cube per scenario (from
:meth:`ScenarioMatrices.dose_cubes` or :func:`scenario_dose_cubes`, which works for any plan,
robust or not, from its beams, spots and weights) and gives

* each structure's statistics in each scenario (:func:`protonpath.planning.dvh.dose_statistics`);
* DVH bands: on common dose bins, the lowest and highest volume over scenarios, with the
  nominal curve;
* worst-case clinical goals: for targets the lowest D95 and D98 (and V95) over scenarios, for
  organs the highest D2, maximum and mean, each with the scenario that gives it;
* the voxel-wise minimum and maximum dose cubes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from protonpath.planning.ct import Grid
from protonpath.planning.dvh import dose_statistics
from protonpath.planning.machine import Machine
from protonpath.planning.raytrace import Beam
from protonpath.planning.scenarios import ScenarioSet, scenario_dose_matrix
from protonpath.planning.spots import Spots
from protonpath.planning.structures import EXTERNAL, TARGET, Structure

#: Worst-case goals: (statistic, which way is worse) for targets and for other structures.
TARGET_GOALS = (("D98", "min"), ("D95", "min"), ("V95", "min"), ("min", "min"))
ORGAN_GOALS = (("D2", "max"), ("max", "max"), ("mean", "max"))


@dataclass(frozen=True)
class DvhBand:
    """Cumulative DVH band of one structure: volume fractions on ``dose_gy`` bins."""

    name: str
    dose_gy: np.ndarray
    nominal: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def to_dict(self, scale: float = 1.0) -> dict:
        return {
            "name": self.name,
            "dose_gy": [round(float(v) * scale, 4) for v in self.dose_gy],
            "nominal": [round(float(v), 5) for v in self.nominal],
            "lower": [round(float(v), 5) for v in self.lower],
            "upper": [round(float(v), 5) for v in self.upper],
        }


@dataclass
class RobustnessEvaluation:
    """A plan evaluated under scenarios (doses per fraction, as given)."""

    scenarios: ScenarioSet
    per_scenario: list  # per scenario: {structure: statistics}
    worst: dict  # {structure: {goal: {"value", "scenario", "nominal"}}}
    bands: list  # DvhBand per structure
    min_dose: np.ndarray
    max_dose: np.ndarray
    roles: dict = field(default_factory=dict)

    def to_dict(self, scale: float = 1.0) -> dict:
        """JSON-ready summary; doses multiplied by ``scale`` (e.g. the number of fractions)."""

        def scaled(key, v):
            return v if key.startswith("V") or key == "voxels" else v * scale

        return {
            "scenarios": self.scenarios.to_dict(),
            "worst_case": {
                name: {
                    goal: {
                        "value": scaled(goal, g["value"]),
                        "nominal": scaled(goal, g["nominal"]),
                        "scenario": g["scenario"],
                        "scenario_label": self.scenarios[g["scenario"]].label,
                    }
                    for goal, g in goals.items()
                }
                for name, goals in self.worst.items()
            },
            "per_scenario": [
                {
                    "scenario": self.scenarios[i].label,
                    "structures": {
                        n: {k: scaled(k, v) for k, v in st.items()} for n, st in stats.items()
                    },
                }
                for i, stats in enumerate(self.per_scenario)
            ],
            "dvh_bands": [b.to_dict(scale) for b in self.bands],
        }


def evaluate_robustness(
    doses: list[np.ndarray],
    structures: list[Structure],
    scenarios: ScenarioSet,
    prescription_gy: float,
    *,
    include_external: bool = False,
    n_bins: int = 200,
) -> RobustnessEvaluation:
    """Robustness of a plan from its dose cube in each scenario (nominal first).

    ``structures`` are on the dose grid; external contours are left out unless
    ``include_external``.
    """
    if len(doses) != len(scenarios):
        raise ValueError(f"{len(doses)} dose cubes for {len(scenarios)} scenarios")
    chosen = [s for s in structures if include_external or s.role != EXTERNAL]
    chosen = [s for s in chosen if s.mask.any()]
    per_scenario = [
        {
            s.name: dose_statistics(d, s.mask, prescription_gy if s.role == TARGET else None)
            for s in chosen
        }
        for d in doses
    ]
    worst: dict = {}
    for s in chosen:
        goals = TARGET_GOALS if s.role == TARGET else ORGAN_GOALS
        worst[s.name] = {}
        for goal, way in goals:
            values = np.array([st[s.name].get(goal, np.nan) for st in per_scenario])
            if np.all(np.isnan(values)):
                continue
            i = int(np.nanargmin(values) if way == "min" else np.nanargmax(values))
            worst[s.name][goal] = {
                "value": float(values[i]),
                "scenario": i,
                "nominal": float(values[0]),
            }
    stack = np.stack([np.asarray(d, dtype=np.float64) for d in doses])
    top = float(stack.max()) if stack.size else 1.0
    edges = np.linspace(0.0, max(top, 1e-9) * 1.02, n_bins)
    bands = []
    for s in chosen:
        values = stack[:, s.mask]  # scenarios x voxels
        curves = np.stack(
            [(v[None, :] >= edges[:, None]).mean(axis=1) for v in values]
        )  # scenarios x bins
        bands.append(DvhBand(s.name, edges, curves[0], curves.min(axis=0), curves.max(axis=0)))
    return RobustnessEvaluation(
        scenarios,
        per_scenario,
        worst,
        bands,
        stack.min(axis=0),
        stack.max(axis=0),
        {s.name: s.role for s in chosen},
    )


def scenario_dose_cubes(
    spr: np.ndarray,
    ct_grid: Grid,
    dose_grid: Grid,
    voxel_mask: np.ndarray,
    beams: list[Beam],
    spots: Spots,
    weights: np.ndarray,
    machine: Machine,
    scenarios: ScenarioSet,
    cut_level: float = 0.995,
    progress=None,
) -> list[np.ndarray]:
    """Dose cube of any plan (beams, spots, weights) in each scenario, on ``voxel_mask``.

    Each scenario's matrix is computed, applied and dropped: memory stays that of one matrix.
    ``progress(stage, done, total)`` is called before each scenario and at the end (a caller
    cancels by raising from it).
    """
    report = progress or (lambda stage, done, total: None)
    traced: dict = {}
    cubes = []
    for i, sc in enumerate(scenarios):
        report("robustness evaluation", i, len(scenarios))
        dm = scenario_dose_matrix(
            spr, ct_grid, dose_grid, voxel_mask, beams, spots, machine, sc, cut_level, traced
        )
        cubes.append(dm.dose_cube(weights))
        del dm
    report("robustness evaluation", len(scenarios), len(scenarios))
    return cubes
