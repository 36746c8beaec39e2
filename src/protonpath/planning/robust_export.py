"""Robust settings in the RT Ion Plan, and a plan's beams, spots and weights read back from it.

DICOM's RT Ion Plan has no attribute for robust optimisation (scenarios, robustness of each
objective), so protonpath writes them in one private block, documented here:

==================  ====  ==============================================================
tag                 VR    value
==================  ====  ==============================================================
(3267,0010)         LO    private creator ``PROTONPATH ROBUST 1``
(3267,1001)         LO    scenario model (``combined``, ``shifts``, ``ranges``, ``sampled``...)
(3267,1002)         DS    setup shift per axis, mm
(3267,1003)         DS    relative range error, percent
(3267,1004)         IS    number of scenarios
(3267,1005)         UT    JSON: ``scenarios`` (:meth:`ScenarioSet.to_dict`), ``objectives``
                          (structure, kind, dose per fraction, weight, robustness),
                          ``settings`` (optimiser), ``worst_case`` (goals at export time)
==================  ====  ==============================================================

Readers that do not know the block ignore it; :func:`read_robust_settings` returns the JSON.
With :func:`plan_from_rt_ion_plan` (beams, spots and weights of the exported plan) and the
scenario set, :func:`protonpath.planning.robustness.scenario_dose_cubes` re-computes the
evaluation from the exported files alone.
"""

from __future__ import annotations

import json

import numpy as np
from pydicom.dataset import Dataset

from protonpath.planning.machine import Machine
from protonpath.planning.raytrace import Beam
from protonpath.planning.scenarios import ScenarioSet
from protonpath.planning.spots import Spots, concatenate_spots, spots_from_arrays

PRIVATE_GROUP = 0x3267
PRIVATE_CREATOR = "PROTONPATH ROBUST 1"


def write_robust_settings(ds: Dataset, scenarios: ScenarioSet, record: dict) -> Dataset:
    """Add the private robust block to an RT Ion Plan dataset (and return it).

    ``record`` holds the JSON parts besides ``scenarios`` (``objectives``, ``settings``,
    ``worst_case``...).
    """
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", scenarios.model[:64])
    block.add_new(0x02, "DS", f"{scenarios.setup_mm:.4g}")
    block.add_new(0x03, "DS", f"{100 * scenarios.range_error:.4g}")
    block.add_new(0x04, "IS", str(len(scenarios)))
    block.add_new(0x05, "UT", json.dumps({"scenarios": scenarios.to_dict(), **record}))
    return ds


def read_robust_settings(ds: Dataset) -> dict | None:
    """The private robust block's JSON, with ``scenarios`` as a :class:`ScenarioSet`; ``None``
    for a plan without one."""
    try:
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    except KeyError:
        return None
    try:
        data = json.loads(block[0x05].value)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unreadable robust settings in the plan: {exc}") from exc
    data["scenarios"] = ScenarioSet.from_dict(data["scenarios"])
    return data


def plan_from_rt_ion_plan(ds: Dataset, machine: Machine) -> tuple[list[Beam], Spots, np.ndarray]:
    """Beams, spots and spot weights (10^6 protons per fraction) of an RT Ion Plan written by
    :func:`protonpath.planning.dicom_export.rt_ion_plan_dataset` (energies must be in the
    machine's data)."""
    beams, parts, weights = [], [], []
    for b, ib in enumerate(ds.IonBeamSequence):
        cps = list(ib.IonControlPointSequence)
        first = cps[0]
        beams.append(
            Beam(
                float(first.GantryAngle),
                float(first.PatientSupportAngle),
                np.array([float(v) for v in first.IsocenterPosition]),
            )
        )
        energy, u, v, w = [], [], [], []
        for cp in cps:
            cw = np.atleast_1d(np.asarray(cp.ScanSpotMetersetWeights, dtype=float))
            if not np.any(cw):
                continue  # the closing control point of a layer
            pos = np.asarray(cp.ScanSpotPositionMap, dtype=float).reshape(-1, 2)
            energy.append(np.full(len(cw), float(cp.NominalBeamEnergy)))
            u.append(pos[:, 0])
            v.append(pos[:, 1])
            w.append(cw)
        if not w:
            continue
        parts.append(
            spots_from_arrays(
                machine,
                np.full(sum(len(x) for x in w), b),
                np.concatenate(energy),
                np.concatenate(u),
                np.concatenate(v),
            )
        )
        weights.append(np.concatenate(w))
    if not parts:
        raise ValueError("the plan has no spot with a meterset weight")
    return beams, concatenate_spots(parts), np.concatenate(weights)
