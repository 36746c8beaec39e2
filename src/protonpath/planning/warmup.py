"""Loading the engine's compiled kernels once per process, before the first plan.

numba keeps the kernels compiled on disk (``cache=True``), but the first call of each in a new
process still loads and links it: about 0.4-0.7 s in all, paid by whichever plan comes first.
A long-lived process (a task worker, a benchmark) calls :func:`warm_up` at start so that this
cost is not inside any plan's timings; the benchmark reports it on its own line.
"""

from __future__ import annotations

import time

import numpy as np

from protonpath.planning.blocks import BlockRows
from protonpath.planning.ct import Grid, HuCalibration, hu_to_spr
from protonpath.planning.dose import compute_dose_matrix
from protonpath.planning.machine import Machine
from protonpath.planning.optimise import SQUARED_DEVIATION, Objective, optimise_weights
from protonpath.planning.raytrace import Beam
from protonpath.planning.spots import spots_from_arrays


def warm_up(machine: Machine | None = None) -> float:
    """Run every kernel once on a tiny water cube; returns the seconds it took."""
    t0 = time.perf_counter()
    if machine is None:
        from protonpath.planning.resources import load_default_machine

        machine = load_default_machine()
    grid = Grid((12, 12, 12), (-22.0, -22.0, -22.0), (4.0, 4.0, 4.0))
    spr = hu_to_spr(
        np.zeros(grid.shape, dtype=np.float32),
        HuCalibration(np.array([-1000.0, 0.0]), np.array([0.0, 1.0])),
    )
    mask = np.zeros(grid.shape, dtype=bool)
    mask[4:8, 4:8, 4:8] = True
    energy = float(machine.energies_mev[len(machine.energies_mev) // 4])
    spots = spots_from_arrays(
        machine,
        np.zeros(4, dtype=int),
        np.full(4, energy),
        np.array([-4.0, 4.0, -4.0, 4.0]),
        np.array([-4.0, -4.0, 4.0, 4.0]),
    )
    dm = compute_dose_matrix(spr, grid, grid, mask, [Beam(0.0, 0.0, np.zeros(3))], spots, machine)
    BlockRows.from_matrix(dm.matrix.tocsr())  # the CSR path of the block builder
    rows = {"cube": np.arange(dm.matrix.shape[0])}
    optimise_weights(dm, [Objective("cube", SQUARED_DEVIATION, 1.0)], rows, max_iterations=3)
    return time.perf_counter() - t0
