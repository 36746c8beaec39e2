"""Range of protons in water from NIST PSTAR CSDA ranges (data file ``pstar_water.csv``).

The table is interpolated in log-log (range against energy is a near power law, so a cubic
spline through ``log R(log E)`` reproduces PSTAR's own intermediate values to a few hundredths
of a millimetre); the stopping power is the inverse of the range's derivative, so that the
two stay consistent (the CSDA approximation: ``dR/dE = 1 / S(E)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline


@dataclass(frozen=True)
class RangeTable:
    """CSDA ranges in water (mm) against energy (MeV), with the table's source."""

    energy_mev: np.ndarray
    csda_range_mm: np.ndarray
    source: str = ""

    def __post_init__(self):
        e = np.asarray(self.energy_mev, dtype=float)
        r = np.asarray(self.csda_range_mm, dtype=float)
        if e.ndim != 1 or len(e) < 4 or len(e) != len(r):
            raise ValueError("a range table needs at least 4 (energy, range) pairs")
        if np.any(np.diff(e) <= 0) or np.any(np.diff(r) <= 0) or np.any(e <= 0):
            raise ValueError("energies and ranges must be positive and increasing")
        object.__setattr__(self, "_spline", CubicSpline(np.log(e), np.log(r)))
        object.__setattr__(self, "_inverse", CubicSpline(np.log(r), np.log(e)))

    def _check(self, energy):
        e = np.asarray(energy, dtype=float)
        if np.any(e < self.energy_mev[0]) or np.any(e > self.energy_mev[-1]):
            raise ValueError(
                f"energy outside the range table ({self.energy_mev[0]:g} to "
                f"{self.energy_mev[-1]:g} MeV)"
            )
        return e

    def range_mm(self, energy_mev):
        """CSDA range in water (mm) of protons of ``energy_mev``."""
        e = self._check(energy_mev)
        return np.exp(self._spline(np.log(e)))

    def energy_mev_for_range(self, range_mm):
        """Energy (MeV) whose CSDA range in water is ``range_mm``."""
        r = np.asarray(range_mm, dtype=float)
        if np.any(r < self.csda_range_mm[0]) or np.any(r > self.csda_range_mm[-1]):
            raise ValueError("range outside the range table")
        return np.exp(self._inverse(np.log(r)))

    def stopping_power_mev_per_mm(self, energy_mev):
        """Total stopping power in water (MeV/mm) implied by the table: ``1 / (dR/dE)``."""
        e = self._check(energy_mev)
        log_e = np.log(e)
        r = np.exp(self._spline(log_e))
        return e / (r * self._spline(log_e, 1))


def range_table_from_csv(text: str) -> RangeTable:
    """Range table from CSV text ``energy_mev,csda_range_g_cm2`` (``#`` lines: source)."""
    comments = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("#")]
    rows = [ln.split(",") for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    header, body = rows[0], rows[1:]
    if header != ["energy_mev", "csda_range_g_cm2"]:
        raise ValueError("range table columns must be energy_mev,csda_range_g_cm2")
    data = np.array([[float(a), float(b)] for a, b in body])
    # water: 1 g/cm2 = 10 mm
    return RangeTable(data[:, 0], data[:, 1] * 10.0, " ".join(comments))
