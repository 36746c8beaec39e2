"""Gamma index comparison of two dose distributions on the same grid (Low et al. 1998).

Global gamma: the dose criterion is a percentage of the reference maximum; points of the
evaluated distribution below a low-dose threshold are not scored.  The search runs over
sub-voxel shifts of the evaluated dose (trilinear interpolation) within ``search_factor`` times
the distance criterion.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def gamma_index(
    reference: np.ndarray,
    evaluated: np.ndarray,
    spacing_mm,
    dose_percent: float = 2.0,
    distance_mm: float = 2.0,
    threshold_percent: float = 10.0,
    steps_per_distance: int = 4,
    search_factor: float = 1.5,
) -> np.ndarray:
    """Gamma of each reference point (NaN below the threshold).

    Parameters
    ----------
    reference, evaluated : ndarray, same shape
        Doses on the same grid, indexed ``[z, y, x]``.
    spacing_mm : sequence of 3 float
        Voxel spacing ``(dx, dy, dz)``.
    dose_percent : float
        Dose-difference criterion, percent of the reference maximum.
    distance_mm : float
        Distance-to-agreement criterion.
    threshold_percent : float
        Reference points below this percentage of the reference maximum are not scored.
    steps_per_distance : int
        Search resolution: shifts in steps of ``distance_mm / steps_per_distance``.
    search_factor : float
        Search radius in units of ``distance_mm``.
    """
    reference = np.asarray(reference, dtype=np.float64)
    evaluated = np.asarray(evaluated, dtype=np.float64)
    dx, dy, dz = (float(s) for s in spacing_mm)
    dmax = float(reference.max())
    dd = dose_percent / 100.0 * dmax
    scored = reference >= threshold_percent / 100.0 * dmax
    pts = np.array(np.nonzero(scored), dtype=np.float64)  # (3, n) as k, j, i
    ref_vals = reference[scored]
    best = np.full(ref_vals.shape, np.inf)
    step = distance_mm / steps_per_distance
    radius = search_factor * distance_mm
    n = int(np.floor(radius / step))
    offsets = [
        (a * step, b * step, c * step)
        for a in range(-n, n + 1)
        for b in range(-n, n + 1)
        for c in range(-n, n + 1)
        if (a * a + b * b + c * c) * step * step <= radius * radius + 1e-9
    ]
    offsets.sort(key=lambda o: o[0] ** 2 + o[1] ** 2 + o[2] ** 2)
    for ox, oy, oz in offsets:
        dist2 = (ox * ox + oy * oy + oz * oz) / distance_mm**2
        if dist2 >= best.max():
            break  # no farther shift can improve any point
        coords = pts + np.array([[oz / dz], [oy / dy], [ox / dx]])
        vals = ndimage.map_coordinates(evaluated, coords, order=1, mode="nearest")
        g2 = dist2 + ((vals - ref_vals) / dd) ** 2
        np.minimum(best, g2, out=best)
    out = np.full(reference.shape, np.nan)
    out[scored] = np.sqrt(best)
    return out


def gamma_pass_rate(gamma: np.ndarray) -> float:
    """Fraction of scored points with gamma <= 1."""
    scored = np.isfinite(gamma)
    return float(np.count_nonzero(gamma[scored] <= 1.0) / max(np.count_nonzero(scored), 1))
