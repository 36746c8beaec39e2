"""Analytical proton pencil-beam dose and the sparse dose-influence matrix.

Dose of a spot of weight 1 (10^6 protons) at a voxel of water-equivalent depth ``w`` and
lateral distance ``r`` from the spot's central ray::

    D = IDD(w + air_offset) * exp(-r^2 / (2 s^2)) / (2 pi s^2) / cut_level
    s^2 = sigma_air^2 + sigma_mcs(w)^2

``IDD`` and ``sigma_mcs`` come from the machine (Gy mm^2 per 10^6 protons after unit
conversion), ``sigma_air`` is the spot size in air at the skin, ``air_offset`` the water
equivalent of the air gap between nozzle and skin.  The Gaussian is cut where it holds
``cut_level`` of its integral (``r^2 <= -2 ln(1 - cut_level) s^2``) and renormalised.

The matrix has one row per voxel of interest (patient voxels of the dose grid) and one column
per spot; it is built per beam by a two-pass (count, fill) parallel numba kernel straight into
CSC arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.sparse as sp

from protonpath.planning.ct import Grid
from protonpath.planning.machine import IDD_TO_GY_MM2_PER_MEGAPROTON, Machine
from protonpath.planning.raytrace import (
    Beam,
    BeamView,
    source_to_surface_mm,
    water_equivalent_depth,
)
from protonpath.planning.spots import Spots
from protonpath.planning.threads import work_parts

#: Stopping-power ratio of air, for the nozzle-to-skin air gap.
AIR_SPR = 0.0011
LUT_STEP_MM = 0.1


@dataclass(frozen=True)
class DoseMatrix:
    """Dose-influence matrix.

    Attributes
    ----------
    matrix : scipy.sparse.csc_matrix, shape (n_voxels, n_spots)
        Dose in Gy per 10^6 protons of each spot at each voxel of interest.
    voxel_indices : ndarray of int
        Flat (C-order) dose-grid index of each row.
    grid : Grid
        Dose grid.
    """

    matrix: sp.csc_matrix
    voxel_indices: np.ndarray
    grid: Grid

    @property
    def n_spots(self) -> int:
        return self.matrix.shape[1]

    def dose_cube(self, weights: np.ndarray) -> np.ndarray:
        """Dose (Gy) on the dose grid for spot weights (10^6 protons)."""
        cube = np.zeros(self.grid.n_voxels, dtype=np.float64)
        cube[self.voxel_indices] = csc_matvec(self.matrix, np.asarray(weights, dtype=np.float64))
        return cube.reshape(self.grid.shape)

    def rows_of(self, mask: np.ndarray) -> np.ndarray:
        """Row numbers of the voxels of a dose-grid mask (voxels outside the rows are dropped)."""
        flat = np.zeros(self.grid.n_voxels, dtype=bool)
        flat[np.flatnonzero(mask)] = True
        return np.flatnonzero(flat[self.voxel_indices])


@dataclass(frozen=True)
class KernelTables:
    """Machine tables resampled on a uniform depth grid for fast lookup."""

    idd_gy_mm2: np.ndarray  # (n_energies, n_depths), float64
    sigma_mcs_sq_mm2: np.ndarray  # (n_energies, n_depths)
    n_depths: np.ndarray  # valid samples per energy
    step_mm: float
    #: running maximum over depth of ``sigma_mcs_sq_mm2``: a non-decreasing bound of it
    sigma_rising_sq_mm2: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        rising = np.maximum.accumulate(self.sigma_mcs_sq_mm2, axis=1)
        object.__setattr__(self, "sigma_rising_sq_mm2", rising)


def kernel_tables(machine: Machine, step_mm: float = LUT_STEP_MM) -> KernelTables:
    """Uniform-depth lookup tables of IDD and multiple-scattering variance per energy."""
    max_depth = max(float(d[-1]) for d in machine.depths_mm)
    n = int(np.ceil(max_depth / step_mm)) + 2
    depth = np.arange(n) * step_mm
    idd = np.zeros((machine.n_energies, n))
    sig = np.zeros((machine.n_energies, n))
    counts = np.zeros(machine.n_energies, dtype=np.int64)
    for e in range(machine.n_energies):
        d = machine.depths_mm[e]
        valid = depth <= d[-1]
        counts[e] = int(valid.sum())
        idd[e, valid] = IDD_TO_GY_MM2_PER_MEGAPROTON * np.interp(depth[valid], d, machine.idd[e])
        sig[e, valid] = np.interp(depth[valid], d, machine.sigma_mcs_mm[e]) ** 2
    return KernelTables(idd, sig, counts, step_mm)


@numba.njit(cache=True, parallel=True)
def _dose_columns(
    vox_u,
    vox_v,
    vox_scale,
    vox_wed,
    cell_start,
    cell_order,
    n_cu,
    n_cv,
    u0,
    v0,
    cell,
    spot_u,
    spot_v,
    spot_e,
    spot_sig0_sq,
    spot_offset,
    spot_reach,
    idd_tab,
    sig_tab,
    n_tab,
    step,
    k2,
    comp,
    sig_rising,
    min_scale,
    indptr,
    indices,
    data,
    count_only,
):
    """Count (``count_only``) or fill the CSC entries of each spot.

    Voxels are binned in lateral cells and sorted by depth within each cell (the voxel arrays
    come in that order, ``cell_order`` maps back to rows), so a spot visits only the cells its
    lateral cut-off reaches, reads them contiguously, and stops at the end of its depth-dose
    table.  A cell's voxels are at least ``dmin`` (the distance from the spot to the cell's
    rectangle) from the spot's ray, and the cut-off ``r^2 <= k2 s^2(depth)`` grows with depth:
    every voxel shallower than the depth where ``s^2`` can first reach ``dmin^2 min_scale^2 /
    k2`` (``sig_rising``: the running maximum of each energy's ``sigma_mcs^2`` table) is cut,
    so the search starts at that depth (found by bisection in the cell) and cells beyond the
    deepest ``s^2`` are skipped.
    """
    n_spots = spot_u.shape[0]
    two_pi = 2.0 * np.pi
    for s in numba.prange(n_spots):
        e = spot_e[s]
        su = spot_u[s]
        sv = spot_v[s]
        reach = spot_reach[s]
        sig0 = spot_sig0_sq[s]
        off = spot_offset[s]
        max_wed = (n_tab[e] - 2) * step - off
        ca0 = max(int(np.floor((su - reach - u0) / cell)), 0)
        ca1 = min(int(np.floor((su + reach - u0) / cell)), n_cu - 1)
        cb0 = max(int(np.floor((sv - reach - v0) / cell)), 0)
        cb1 = min(int(np.floor((sv + reach - v0) / cell)), n_cv - 1)
        pos = indptr[s]
        n = 0
        n_e = n_tab[e]
        for ca in range(ca0, ca1 + 1):
            gu = max(u0 + ca * cell - su, su - (u0 + (ca + 1) * cell), 0.0)
            for cb in range(cb0, cb1 + 1):
                c = ca * n_cv + cb
                gv = max(v0 + cb * cell - sv, sv - (v0 + (cb + 1) * cell), 0.0)
                need = (gu * gu + gv * gv) * min_scale * min_scale / k2 - sig0
                q0 = cell_start[c]
                q1 = cell_start[c + 1]
                if need > 0.0:
                    # first depth sample whose running-maximum variance reaches ``need``
                    lo = 0
                    hi = n_e
                    while lo < hi:
                        mid = (lo + hi) // 2
                        if sig_rising[e, mid] >= need:
                            hi = mid
                        else:
                            lo = mid + 1
                    if lo >= n_e:
                        continue  # no depth of this energy reaches the cell
                    # a voxel interpolates samples i0, i0 + 1: cut while i0 + 1 < lo
                    w_lo = (lo - 1) * step - off
                    a = q0
                    b = q1
                    while a < b:
                        mid = (a + b) // 2
                        if vox_wed[mid] < w_lo:
                            a = mid + 1
                        else:
                            b = mid
                    q0 = a
                for q in range(q0, q1):
                    wed = vox_wed[q]
                    if wed > max_wed:
                        break  # voxels are sorted by depth within a cell
                    du = vox_u[q] - su
                    dv = vox_v[q] - sv
                    sc = vox_scale[q]
                    r2 = (du * du + dv * dv) * sc * sc
                    depth = wed + off
                    if depth < 0.0:
                        depth = 0.0
                    f = depth / step
                    i0 = int(f)
                    t = f - i0
                    s2 = sig0 + sig_tab[e, i0] * (1.0 - t) + sig_tab[e, i0 + 1] * t
                    if r2 > k2 * s2:
                        continue
                    if not count_only:
                        idd = idd_tab[e, i0] * (1.0 - t) + idd_tab[e, i0 + 1] * t
                        indices[pos + n] = cell_order[q]
                        data[pos + n] = comp * idd * np.exp(-r2 / (2.0 * s2)) / (two_pi * s2)
                    n += 1
        if count_only:
            indptr[s + 1] = n


@numba.njit(cache=True, parallel=True)
def _cell_sort(cid, wed, n_cells):
    """``(start, order)``: voxels grouped by cell (a counting sort, stable), then sorted by
    depth within each cell (ties keep voxel order), as ``np.lexsort((wed, cid))``."""
    counts = np.zeros(n_cells + 1, dtype=np.int64)
    for i in range(cid.shape[0]):
        counts[cid[i] + 1] += 1
    start = np.cumsum(counts)
    slot = start[:-1].copy()
    order = np.empty(cid.shape[0], dtype=np.int64)
    for i in range(cid.shape[0]):
        c = cid[i]
        order[slot[c]] = i
        slot[c] += 1
    for c in numba.prange(n_cells):
        a = start[c]
        b = start[c + 1]
        if b - a > 1:
            members = order[a:b].copy()
            by_depth = np.argsort(wed[members], kind="mergesort")
            for k in range(b - a):
                order[a + k] = members[by_depth[k]]
    return start, order


def _bin_voxels(u: np.ndarray, v: np.ndarray, wed: np.ndarray, cell: float):
    """Lateral cells of voxels (CSR-like ``start``/``order``), depth-sorted within a cell."""
    u0, v0 = float(u.min()) - cell, float(v.min()) - cell
    ca = np.floor((u - u0) / cell).astype(np.int64)
    cb = np.floor((v - v0) / cell).astype(np.int64)
    n_cu, n_cv = int(ca.max()) + 2, int(cb.max()) + 2
    cid = ca * n_cv + cb
    start, order = _cell_sort(cid, np.ascontiguousarray(wed, dtype=np.float64), n_cu * n_cv)
    return start, order, n_cu, n_cv, u0, v0


def spot_initial_sigma_mm(machine: Machine, spots: Spots, ssd_mm: np.ndarray) -> np.ndarray:
    """Spot sigma in air at the skin (mm) of each spot, from its source-to-surface distance."""
    ssd = np.where(np.isfinite(ssd_mm), ssd_mm, machine.sad_mm)
    return machine.spot_sigma_in_air_mm(spots.energy_index, ssd)


def beam_dose_columns(
    view: BeamView,
    spots: Spots,
    machine: Machine,
    ssd_mm: np.ndarray,
    tables: KernelTables,
    cut_level: float = 0.995,
    cell_mm: float = 4.0,
    out=None,
    fill=None,
):
    """CSC arrays ``(indptr, indices, data)`` of one beam's spots over the view's points.

    With ``fill=True`` the entries are only counted: the result is ``(indptr, fill_into)``,
    and ``fill_into(indices, data)`` writes them into arrays of ``indptr[-1]`` entries (so that
    :func:`compute_dose_matrix` allocates the whole matrix once, not per beam and again to
    join the beams).

    Parameters
    ----------
    view : BeamView
        Voxels of interest seen from this beam.
    spots : Spots
        This beam's spots.
    machine : Machine
        Beam model.
    ssd_mm : ndarray
        Source-to-surface distance of each spot's central ray.
    tables : KernelTables
        Lookup tables of ``machine``.
    cut_level : float
        Fraction of the lateral Gaussian's integral kept.
    cell_mm : float
        Size of the lateral cells voxels are binned in for the neighbour search.
    out : tuple of ndarray, optional
        ``(indices, data)`` to fill instead of new arrays.
    fill : bool, optional
        Count only and return a function that fills (see above).
    """
    sad = machine.sad_mm
    scale = (view.axial_mm / sad).astype(np.float64)
    sig0 = spot_initial_sigma_mm(machine, spots, ssd_mm)
    ssd = np.where(np.isfinite(ssd_mm), ssd_mm, sad)
    nozzle_to_skin = ssd + machine.nozzle_to_isocentre_mm - sad
    offset = AIR_SPR * (nozzle_to_skin - machine.fit_air_offset_mm)
    k2 = -2.0 * np.log(1.0 - cut_level)
    max_sig_sq = np.array([tables.sigma_mcs_sq_mm2[e].max() for e in range(len(tables.n_depths))])
    min_scale = float(scale.min()) if len(scale) else 1.0
    reach = np.sqrt(k2 * (sig0**2 + max_sig_sq[spots.energy_index])) / max(min_scale, 1e-3)
    cell = float(np.clip(cell_mm, 1.0, None))
    wed = view.wed_mm.astype(np.float64)
    start, order, n_cu, n_cv, u0, v0 = _bin_voxels(view.u_mm, view.v_mm, wed, cell)
    n = len(spots)
    indptr = np.zeros(n + 1, dtype=np.int64)
    args = (
        np.ascontiguousarray(view.u_mm[order], dtype=np.float64),
        np.ascontiguousarray(view.v_mm[order], dtype=np.float64),
        scale[order],
        wed[order],
        start,
        order,
        n_cu,
        n_cv,
        u0,
        v0,
        cell,
        spots.u_mm.astype(np.float64),
        spots.v_mm.astype(np.float64),
        spots.energy_index.astype(np.int64),
        (sig0**2).astype(np.float64),
        offset.astype(np.float64),
        reach.astype(np.float64),
        tables.idd_gy_mm2,
        tables.sigma_mcs_sq_mm2,
        tables.n_depths,
        tables.step_mm,
        float(k2),
        1.0 / cut_level,
        tables.sigma_rising_sq_mm2,
        # r^2 is measured at the voxel's depth: (du^2 + dv^2) * scale^2
        max(min_scale, 0.0),
    )
    _dose_columns(*args, indptr, np.zeros(0, np.int32), np.zeros(0, np.float32), True)
    np.cumsum(indptr, out=indptr)
    nnz = int(indptr[-1])

    def fill_into(indices, data):
        if len(indices) != nnz or len(data) != nnz:
            raise ValueError(f"output arrays hold {len(indices)} entries, the beam has {nnz}")
        _dose_columns(*args, indptr, indices, data, False)
        return indices, data

    if fill:  # the caller allocates the output once it knows every beam's size
        return indptr, fill_into
    if out is None:
        out = (np.empty(nnz, dtype=np.int32), np.empty(nnz, dtype=np.float32))
    indices, data = fill_into(*out)
    return indptr, indices, data


def compute_dose_matrix(
    spr: np.ndarray,
    ct_grid: Grid,
    dose_grid: Grid,
    voxel_mask: np.ndarray,
    beams: list[Beam],
    spots: Spots,
    machine: Machine,
    cut_level: float = 0.995,
    views: list[BeamView] | None = None,
    progress: Callable[[int, int], None] | None = None,
    tables: KernelTables | None = None,
    ssd_mm: list | None = None,
) -> DoseMatrix:
    """Dose-influence matrix of all spots of a plan.

    Parameters
    ----------
    spr : ndarray
        Stopping-power ratio on ``ct_grid``.
    ct_grid, dose_grid : Grid
        CT and dose grids.
    voxel_mask : ndarray of bool, shape dose_grid.shape
        Voxels of interest (e.g. the union of all structures).
    beams : list of Beam
        The plan's fields; ``spots.beam_index`` refers to this list.
    spots : Spots
        All spots.
    machine : Machine
        Beam model.
    cut_level : float
        Fraction of each lateral Gaussian kept (see module docstring).
    views : list of BeamView, optional
        Precomputed :func:`raytrace.water_equivalent_depth` of the voxels of interest.
    progress : callable, optional
        Called as ``progress(beams_done, n_beams)``.
    tables : KernelTables, optional
        :func:`kernel_tables` of ``machine``, when computed already.
    ssd_mm : list of ndarray, optional
        Per beam, :func:`raytrace.source_to_surface_mm` of its spots, when computed already
        (uncertainty scenarios with the same setup shift share them).

    Returns
    -------
    DoseMatrix
    """
    voxel_indices = np.flatnonzero(voxel_mask)
    points = dose_grid.points_mm(voxel_indices)
    tables = tables if tables is not None else kernel_tables(machine)
    n_spots = len(spots)
    indptr_all = np.zeros(n_spots + 1, dtype=np.int64)
    order = np.argsort(spots.beam_index, kind="stable")
    if not np.array_equal(order, np.arange(n_spots)):
        raise ValueError("spots must be grouped by beam (ascending beam_index)")
    fills = []
    for b, beam in enumerate(beams):
        sel = np.flatnonzero(spots.beam_index == b)
        if len(sel) == 0:
            continue
        view = (
            views[b]
            if views is not None
            else water_equivalent_depth(spr, ct_grid, beam, machine.sad_mm, points)
        )
        beam_spots = spots.subset(sel)
        ssd = (
            ssd_mm[b]
            if ssd_mm is not None
            else source_to_surface_mm(
                spr, ct_grid, beam, machine.sad_mm, beam_spots.u_mm, beam_spots.v_mm
            )
        )
        indptr, fill_into = beam_dose_columns(
            view, beam_spots, machine, ssd, tables, cut_level, fill=True
        )
        fills.append((sel, indptr, fill_into))
    # counted first, then filled in place: the matrix is allocated once (joining per-beam
    # arrays would hold every entry twice at the peak)
    offset = 0
    for sel, indptr, _ in fills:
        indptr_all[sel[0] + 1 : sel[-1] + 2] = indptr[1:] + offset
        offset += int(indptr[-1])
    indices = np.empty(offset, dtype=np.int32)
    data = np.empty(offset, dtype=np.float32)
    for done, (sel, indptr, fill_into) in enumerate(fills):
        start = int(indptr_all[sel[0]])
        fill_into(indices[start : start + int(indptr[-1])], data[start : start + int(indptr[-1])])
        if progress is not None:
            progress(done + 1, len(fills))
    matrix = sp.csc_matrix((data, indices, indptr_all), shape=(len(voxel_indices), n_spots))
    return DoseMatrix(matrix, voxel_indices, dose_grid)


@numba.njit(cache=True, parallel=True)
def _csr_matvec(indptr, indices, data, x):
    n_rows = indptr.shape[0] - 1
    out = np.zeros(n_rows)
    for r in numba.prange(n_rows):
        # four running sums: one chain of dependent additions would wait on each addition's
        # latency; unsigned positions spare numba's negative-index checks (about 1.5x)
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        q = np.uint64(indptr[r])
        end = np.uint64(indptr[r + 1])
        while q + np.uint64(4) <= end:
            a0 += data[q] * x[indices[q]]
            a1 += data[q + np.uint64(1)] * x[indices[q + np.uint64(1)]]
            a2 += data[q + np.uint64(2)] * x[indices[q + np.uint64(2)]]
            a3 += data[q + np.uint64(3)] * x[indices[q + np.uint64(3)]]
            q += np.uint64(4)
        while q < end:
            a0 += data[q] * x[indices[q]]
            q += np.uint64(1)
        out[r] = (a0 + a1) + (a2 + a3)
    return out


def csc_rmatvec(matrix: sp.csc_matrix, y: np.ndarray) -> np.ndarray:
    """``matrix.T @ y`` (float64) for a CSC matrix: one gather per column, parallel over
    columns."""
    return _csr_matvec(
        matrix.indptr, matrix.indices, matrix.data, np.ascontiguousarray(y, dtype=np.float64)
    )


@numba.njit(cache=True, parallel=True)
def _csc_matvec(indptr, indices, data, x, n_rows, n_threads):
    n_cols = indptr.shape[0] - 1
    partial = np.zeros((n_threads, n_rows))
    for t in numba.prange(n_threads):
        acc = partial[t]
        for c in range(n_cols * t // n_threads, n_cols * (t + 1) // n_threads):
            xc = x[c]
            if xc == 0.0:
                continue
            for q in range(indptr[c], indptr[c + 1]):
                acc[indices[q]] += data[q] * xc
    out = partial[0].copy()
    for t in range(1, n_threads):
        out += partial[t]
    return out


def csc_matvec(matrix: sp.csc_matrix, x: np.ndarray) -> np.ndarray:
    """``matrix @ x`` (float64) for a CSC matrix, in parallel over columns and without the
    float64 copy of a float32 matrix that SciPy's product makes (for repeated products build a
    :class:`protonpath.planning.blocks.BlockRows` once)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if not (sp.issparse(matrix) and matrix.format == "csc"):
        return np.asarray(matrix @ x, dtype=np.float64)
    if x.shape != (matrix.shape[1],):
        raise ValueError(f"expected a vector of {matrix.shape[1]} values, got {x.shape}")
    threads = max(1, min(work_parts(), matrix.shape[1]))  # parts: the same sums on any threads
    return _csc_matvec(matrix.indptr, matrix.indices, matrix.data, x, int(matrix.shape[0]), threads)
