"""Dose-averaged LET and RBE-weighted dose, for plan evaluation.

LET: each spot's dose-averaged LET of the primary protons at water-equivalent depth ``z`` is
``sum S(r)^2 phi / sum S(r) phi`` over the residual ranges ``r = R' - z`` of protons whose range
``R'`` is spread around the spot's R80 by range straggling (Bortfeld 1997:
``sigma = 0.012 R^0.935`` in cm), with ``S`` the NIST PSTAR stopping power in water; the residual
range is floored at 0.15 mm (3 MeV) where the table ends.  Secondary particles are left out, so
LET beyond the distal fall-off is underestimated; the values are for evaluation, not
optimisation.  A voxel's LET_d is that of its spots weighted by their dose there.

RBE: the prescription model stays the constant 1.1 (doses in Gy(RBE) = 1.1 x physical).  For
evaluation, two LET-dependent linear-quadratic models, with the photon ``(alpha/beta)_x`` of each
structure (``data/alpha_beta.json``) and ``d`` the physical dose per fraction::

    RBE = 1/(2d) * (sqrt(ab^2 + 4 d ab RBEmax + 4 d^2 RBEmin^2) - ab)

* McNamara A.L., Schuemann J., Paganetti H., Phys Med Biol 60:8399 (2015):
  ``RBEmax = 0.99064 + 0.35605 LET/ab``, ``RBEmin = 1.1012 - 0.0038703 sqrt(ab) LET``;
* Wedenberg M., Lind B.K., Hardemark B., Acta Oncol 52:580 (2013):
  ``RBEmax = 1 + 0.434 LET/ab``, ``RBEmin = 1``.

LET in keV/um, doses in Gy, ``ab`` in Gy.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import scipy.sparse as sp

from protonpath.planning import resources
from protonpath.planning.machine import Machine

CONSTANT_RBE = 1.1
MODELS = ("constant", "mcnamara", "wedenberg")
MIN_RESIDUAL_RANGE_MM = 0.15
ALPHA_BETA_FILE = "alpha_beta.json"


def straggling_sigma_mm(range_mm):
    """Range straggling sigma (mm) in water (Bortfeld 1997)."""
    r_cm = np.asarray(range_mm, dtype=float) / 10.0
    return 10.0 * 0.012 * r_cm**0.935


def let_depth_table(machine: Machine, step_mm: float = 0.5, n_straggle: int = 41):
    """Dose-averaged LET (keV/um) of each energy on a common depth grid.

    Returns ``(depths_mm, let)`` with ``let`` of shape ``(n_energies, n_depths)``.
    """
    from protonpath.planning.proteus_one import load_pstar_water

    table = load_pstar_water()
    r_lo = float(table.csda_range_mm[0])
    deepest = float(np.max(machine.range_r80_mm)) + 30.0
    depths = np.arange(0.0, deepest + step_mm, step_mm)
    x = np.linspace(-4.0, 4.0, n_straggle)
    g = np.exp(-0.5 * x**2)
    out = np.zeros((machine.n_energies, len(depths)))
    for e in range(machine.n_energies):
        r80 = float(machine.range_r80_mm[e])
        ranges = r80 + straggling_sigma_mm(r80) * x  # (n_straggle,)
        resid = ranges[None, :] - depths[:, None]
        alive = resid > 0
        r = np.clip(resid, max(MIN_RESIDUAL_RANGE_MM, r_lo), None)
        s = table.stopping_power_mev_per_mm(table.energy_mev_for_range(r))  # MeV/mm = keV/um
        wgt = g[None, :] * alive
        num = (wgt * s**2).sum(axis=1)
        den = (wgt * s).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            let = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        # beyond every proton's range: hold the last value (no primaries left)
        last = np.flatnonzero(den > 0)
        if len(last):
            let[last[-1] + 1 :] = let[last[-1]]
        out[e] = let
    return depths, out


def let_matrix(dose_matrix, spots, machine: Machine, wed_per_beam, step_mm: float = 0.5):
    """Sparse matrix of LET (keV/um) with the dose-influence matrix's pattern.

    ``wed_per_beam[b]`` is the water-equivalent depth (mm) of each matrix row (voxel) along beam
    ``b`` (from :func:`protonpath.planning.raytrace.water_equivalent_depth`).
    """
    d = sp.csc_matrix(dose_matrix.matrix if hasattr(dose_matrix, "matrix") else dose_matrix)
    depths, table = let_depth_table(machine, step_mm)
    data = np.empty_like(d.data)
    for j in range(d.shape[1]):
        lo, hi = d.indptr[j], d.indptr[j + 1]
        rows = d.indices[lo:hi]
        wed = np.asarray(wed_per_beam[int(spots.beam_index[j])])[rows]
        data[lo:hi] = np.interp(wed, depths, table[int(spots.energy_index[j])])
    return sp.csc_matrix((data, d.indices.copy(), d.indptr.copy()), shape=d.shape)


def dose_averaged_let(dose_matrix, let: sp.csc_matrix, weights) -> np.ndarray:
    """LET_d (keV/um) of each matrix row: ``sum D_ij w_j L_ij / sum D_ij w_j`` (0 where no dose)."""
    d = sp.csc_matrix(dose_matrix.matrix if hasattr(dose_matrix, "matrix") else dose_matrix)
    w = np.asarray(weights, dtype=float)
    dose = d @ w
    dl = sp.csc_matrix((d.data * let.data, d.indices, d.indptr), shape=d.shape) @ w
    out = np.zeros_like(dose)
    pos = dose > 0
    out[pos] = dl[pos] / dose[pos]
    return out


def _lq_rbe(dose, ab, rbe_max, rbe_min):
    d = np.asarray(dose, dtype=float)
    ab = np.broadcast_to(np.asarray(ab, dtype=float), d.shape)
    out = np.empty_like(d)
    small = d <= 1e-9
    # d -> 0: RBE -> RBEmax
    out[small] = np.broadcast_to(rbe_max, d.shape)[small]
    dd, a = d[~small], ab[~small]
    mx = np.broadcast_to(rbe_max, d.shape)[~small]
    mn = np.broadcast_to(rbe_min, d.shape)[~small]
    out[~small] = (np.sqrt(a**2 + 4 * dd * a * mx + 4 * dd**2 * mn**2) - a) / (2 * dd)
    return out


def rbe(dose_per_fraction_gy, let_kev_um, alpha_beta_gy, model: str = "constant"):
    """RBE per voxel for physical dose per fraction, LET_d and photon alpha/beta."""
    d = np.asarray(dose_per_fraction_gy, dtype=float)
    let = np.broadcast_to(np.asarray(let_kev_um, dtype=float), d.shape)
    ab = np.broadcast_to(np.asarray(alpha_beta_gy, dtype=float), d.shape)
    if np.any(ab <= 0):
        raise ValueError("alpha/beta must be positive")
    if model == "constant":
        return np.full(d.shape, CONSTANT_RBE)
    if model == "mcnamara":
        rbe_max = 0.99064 + 0.35605 * let / ab
        rbe_min = 1.1012 - 0.0038703 * np.sqrt(ab) * let
    elif model == "wedenberg":
        rbe_max = 1.0 + 0.434 * let / ab
        rbe_min = np.ones_like(d)
    else:
        raise ValueError(f"unknown RBE model {model!r}; one of {', '.join(MODELS)}")
    return _lq_rbe(d, ab, rbe_max, rbe_min)


def rbe_weighted_dose(dose_per_fraction_gy, let_kev_um=0.0, alpha_beta_gy=2.0, model="constant"):
    """RBE-weighted dose (Gy(RBE)) per fraction."""
    d = np.asarray(dose_per_fraction_gy, dtype=float)
    return d * rbe(d, let_kev_um, alpha_beta_gy, model)


@functools.cache
def _alpha_beta_data() -> dict:
    return json.loads(resources.read_data_text(ALPHA_BETA_FILE))


def alpha_beta_for(name: str, is_target: bool = False, table: dict | None = None) -> float:
    """Photon alpha/beta (Gy) of a structure from ``alpha_beta.json`` (or ``table``)."""
    data = table or _alpha_beta_data()
    by_name = {k.lower(): v for k, v in data.get("structures", {}).items()}
    if name.lower() in by_name:
        return float(by_name[name.lower()]["alpha_beta_gy"])
    key = "target" if is_target and "target" in data else "default"
    return float(data[key]["alpha_beta_gy"])


def alpha_beta_map(structures, priority_rows, n_rows, table: dict | None = None) -> np.ndarray:
    """alpha/beta per matrix row from structures (``priority_rows``: name -> rows, as given by
    :func:`protonpath.planning.structures.resolve_overlaps` and ``DoseMatrix.rows_of``)."""
    from protonpath.planning.structures import TARGET

    roles = {s.name: s.role for s in structures}
    out = np.full(n_rows, alpha_beta_for("", False, table))
    for name, rows in priority_rows.items():
        out[rows] = alpha_beta_for(name, roles.get(name) == TARGET, table)
    return out
