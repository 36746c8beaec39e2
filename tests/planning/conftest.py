"""Shared phantoms for the planning tests (small, coarse grids so tests run in seconds)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from protonpath.planning import matrad_io
from protonpath.planning.ct import CT, Grid, HuCalibration
from protonpath.planning.structures import EXTERNAL, OAR, TARGET, Structure

# numba's own work queue: OpenMP's spinning threads crawl when the 2 cores are shared
if not numba.config.THREADING_LAYER or numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "workqueue"

WATER_CALIBRATION = HuCalibration(np.array([-1000.0, 0.0, 1000.0]), np.array([0.0, 1.0, 2.0]))


def water_box(
    half_width_mm: float = 60.0,
    depth_mm: float = 220.0,
    spacing_mm=(2.0, 2.0, 2.0),
    air_mm: float = 10.0,
):
    """Water box (HU 0) in air (HU -1000); entrance face at y = 0 for a gantry-0 beam.

    The box fills x, z in [-half_width, half_width] and y in [0, depth]; voxel centres sit at
    half-voxel offsets so that the water surface lies on voxel edges.
    """
    dx, dy, dz = spacing_mm
    x = np.arange(-half_width_mm - air_mm + dx / 2, half_width_mm + air_mm, dx)
    y = np.arange(-air_mm + dy / 2, depth_mm + air_mm, dy)
    z = np.arange(-half_width_mm - air_mm + dz / 2, half_width_mm + air_mm, dz)
    grid = Grid((len(z), len(y), len(x)), (x[0], y[0], z[0]), spacing_mm)
    water = (
        (np.abs(z)[:, None, None] < half_width_mm)
        & ((y >= 0) & (y <= depth_mm))[None, :, None]
        & (np.abs(x)[None, None, :] < half_width_mm)
    )
    hu = np.where(water, 0.0, -1000.0).astype(np.float32)
    return CT(hu, grid), water


@pytest.fixture(scope="session")
def water():
    return water_box()


@pytest.fixture(scope="session")
def cube_plan_case():
    """Water box with a 40 mm cubic target at 60-100 mm depth and an OAR block just behind half of it."""
    ct, body = water_box(half_width_mm=50.0, depth_mm=160.0, spacing_mm=(4.0, 4.0, 4.0))
    x, y, z = ct.grid.axes_mm()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    target = (np.abs(xx) < 20) & (np.abs(zz) < 20) & (yy > 60) & (yy < 100)
    oar = (xx > 0) & (xx < 20) & (np.abs(zz) < 20) & (yy > 100) & (yy < 116)
    structures = [
        Structure("PTV", target, TARGET),
        Structure("Rectum", oar, OAR),
        Structure("BODY", body, EXTERNAL),
    ]
    return ct, structures


@pytest.fixture(scope="session")
def tg119():
    """The TG119 phantom from the pyRadPlan wheel (scripts/setup.d/20-planning-testdata.sh)."""
    wheel = matrad_io.find_pyradplan_wheel()
    assert wheel is not None, (
        "pyRadPlan wheel missing: run scripts/setup.d/20-planning-testdata.sh "
        "(pip download --no-deps pyradplan -d .cache/wheels)"
    )
    return matrad_io.load_tg119(wheel)
