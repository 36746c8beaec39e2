"""Dose-volume histograms and dose statistics of structures.

All volumes are fractions of the structure's voxels (every voxel of a grid has the same volume);
doses are in Gy.  ``D_x`` is the minimum dose received by the hottest ``x`` % of the volume,
``V_x`` the fraction of the volume receiving at least ``x`` % of the prescription.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dvh:
    """Cumulative DVH: ``volume_fraction[i]`` of the structure receives ``>= dose_gy[i]``."""

    name: str
    dose_gy: np.ndarray
    volume_fraction: np.ndarray


def cumulative_dvh(dose: np.ndarray, mask: np.ndarray, name: str = "", bin_gy: float | None = None):
    """Cumulative DVH of the voxels of ``mask``.

    Parameters
    ----------
    dose : ndarray
        Dose (Gy) on a grid.
    mask : ndarray of bool
        Structure on the same grid.
    name : str
        Structure name.
    bin_gy : float, optional
        Dose bin width (default: 1/1000 of the maximum dose).
    """
    values = np.asarray(dose)[np.asarray(mask, dtype=bool)]
    top = float(values.max()) if values.size else 0.0
    bin_gy = bin_gy or max(top / 1000.0, 1e-6)
    edges = np.arange(0.0, top + 2 * bin_gy, bin_gy)
    if values.size == 0:
        return Dvh(name, edges, np.zeros_like(edges))
    sorted_values = np.sort(values)
    at_least = values.size - np.searchsorted(sorted_values, edges, side="left")
    return Dvh(name, edges, at_least / values.size)


def dose_at_volume(dose: np.ndarray, mask: np.ndarray, volume_percent: float) -> float:
    """``D_x``: the dose (Gy) received by at least ``volume_percent`` % of the structure."""
    values = np.sort(np.asarray(dose)[np.asarray(mask, dtype=bool)])[::-1]
    if values.size == 0:
        return float("nan")
    n = int(np.ceil(volume_percent / 100.0 * values.size))
    return float(values[min(max(n, 1), values.size) - 1])


def volume_at_dose(dose: np.ndarray, mask: np.ndarray, dose_gy: float) -> float:
    """Fraction of the structure receiving at least ``dose_gy``."""
    values = np.asarray(dose)[np.asarray(mask, dtype=bool)]
    if values.size == 0:
        return float("nan")
    return float(np.count_nonzero(values >= dose_gy) / values.size)


def dose_statistics(dose: np.ndarray, mask: np.ndarray, prescription_gy: float | None = None):
    """Usual plan-evaluation numbers of one structure.

    Returns
    -------
    dict
        ``mean``, ``min``, ``max``, ``D98``, ``D95``, ``D50``, ``D2`` (Gy) and, with a
        prescription, ``V95`` and ``V107`` (fractions).
    """
    values = np.asarray(dose)[np.asarray(mask, dtype=bool)]
    if values.size == 0:
        return {"voxels": 0}
    stats = {
        "voxels": int(values.size),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
    }
    for x in (98, 95, 50, 2):
        stats[f"D{x}"] = dose_at_volume(dose, mask, x)
    if prescription_gy:
        stats["V95"] = volume_at_dose(dose, mask, 0.95 * prescription_gy)
        stats["V107"] = volume_at_dose(dose, mask, 1.07 * prescription_gy)
    return stats
