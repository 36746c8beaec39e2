"""IBA Proteus One: machine data, monitor units, range shifter and lateral halo.

The figures live in ``data/proteus_one.json`` (versioned, each with its source and whether it
is published); :func:`load_proteus_one` reads them into :class:`ProteusOneData`, whose fields
are all parameters so that a department replaces the unpublished ones with its own
commissioning values (``dataclasses.replace``).  :func:`build_proteus_one_machine` makes the
pencil-beam :class:`~protonpath.planning.machine.Machine` whose nominal energies have the NIST
PSTAR CSDA range in water (:mod:`protonpath.planning.range_water`).

Monitor units: the monitor chamber's charge per proton follows the stopping power in air, so
the protons per MU at energy ``E`` are ``N_100 * S(100 MeV) / S(E)`` (water and air stopping
powers have nearly the same energy dependence above 50 MeV).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from protonpath.planning import resources
from protonpath.planning.machine import (
    PROTON_MASS_MEV,
    Machine,
    _depth_samples_mm,
    bortfeld_idd,
    bragg_kleeman_energy_mev,
    distal_depth_mm,
    multiple_scattering_sigma_mm,
    peak_depth_mm,
)
from protonpath.planning.range_water import RangeTable, range_table_from_csv

DATA_FILE = "proteus_one.json"
PSTAR_FILE = "pstar_water.csv"
MEGAPROTON = 1.0e6


@dataclass(frozen=True)
class RangeShifter:
    """A range shifter slab in the nozzle (lengths in mm)."""

    id: str
    water_equivalent_thickness_mm: float
    material: str = "PMMA"
    stopping_power_ratio: float = 1.165
    radiation_length_mm: float = 340.7
    isocentre_to_range_shifter_mm: float = 300.0

    @property
    def physical_thickness_mm(self) -> float:
        return self.water_equivalent_thickness_mm / self.stopping_power_ratio


@dataclass(frozen=True)
class ProteusOneData:
    """Figures of ``proteus_one.json`` (see the file for each one's source and status)."""

    name: str
    version: str
    energy_min_mev: float
    energy_max_mev: float
    layer_spacing_mm: float
    spot_sigma_in_air_at_isocentre_mm: tuple
    sad_mm: float
    nozzle_to_isocentre_mm: float
    protons_per_mu_at_100_mev: float
    min_mu_per_spot: float
    max_mu_per_spot: float
    pulse_period_ms: float
    max_mu_per_pulse: float
    spot_dead_time_ms: float
    scanning_speed_x_mm_per_ms: float
    scanning_speed_y_mm_per_ms: float
    spot_settling_ms: float
    layer_switch_down_s: float
    layer_switch_up_s: float
    spots_per_burst: int
    burst_switching_s: float
    field_setup_s: float
    halo_weight_at_surface: float
    halo_weight_per_range: float
    halo_sigma_factor: float
    range_shifter: RangeShifter
    energy_spread_fraction: float = 0.0067
    idd_tail_fraction: float = 0.0
    nuclear_local_fraction: float = 0.6
    nuclear_buildup_mm: float = 0.0
    mean_energy_offset_mev: tuple = ()
    sources: dict = dataclasses.field(default_factory=dict, compare=False)

    def unpublished(self) -> list[str]:
        """Names of the figures the file marks as unpublished (parameters to commission)."""
        return sorted(k for k, v in self.sources.items() if v.get("status") == "unpublished")


def proteus_one_from_dict(data: dict) -> ProteusOneData:
    """:class:`ProteusOneData` from the parsed ``proteus_one.json``."""
    figures = data["figures"]
    names = {f.name for f in dataclasses.fields(ProteusOneData)} - {"name", "version", "sources"}
    missing = names - set(figures)
    if missing:
        raise ValueError(f"machine data file lacks {', '.join(sorted(missing))}")
    values = {k: figures[k]["value"] for k in names}
    rs = values["range_shifter"]
    values["range_shifter"] = RangeShifter(
        id=str(rs["id"]),
        water_equivalent_thickness_mm=float(rs["water_equivalent_thickness_mm"]),
        material=str(rs["material"]),
        stopping_power_ratio=float(rs["stopping_power_ratio"]),
        radiation_length_mm=float(rs["radiation_length_mm"]),
        isocentre_to_range_shifter_mm=float(rs["isocentre_to_range_shifter_mm"]),
    )
    values["spot_sigma_in_air_at_isocentre_mm"] = tuple(
        (float(e), float(s)) for e, s in values["spot_sigma_in_air_at_isocentre_mm"]
    )
    values["spots_per_burst"] = int(values["spots_per_burst"])
    values["mean_energy_offset_mev"] = tuple(
        (float(e), float(d)) for e, d in values["mean_energy_offset_mev"]
    )
    sources = {k: {"status": v["status"], "source": v["source"]} for k, v in figures.items()}
    return ProteusOneData(
        name=data["name"], version=str(data["version"]), sources=sources, **values
    )


@functools.cache
def load_proteus_one() -> ProteusOneData:
    """The packaged Proteus One figures."""
    return proteus_one_from_dict(json.loads(resources.read_data_text(DATA_FILE)))


@functools.cache
def load_pstar_water() -> RangeTable:
    """NIST PSTAR CSDA ranges of protons in liquid water."""
    return range_table_from_csv(resources.read_data_text(PSTAR_FILE))


# --- monitor units ----------------------------------------------------------------------------


def protons_per_mu(energy_mev, data: ProteusOneData | None = None) -> np.ndarray:
    """Protons per monitor unit at ``energy_mev`` (see the module's note)."""
    data = data or load_proteus_one()
    table = load_pstar_water()
    s = table.stopping_power_mev_per_mm(np.asarray(energy_mev, dtype=float))
    return data.protons_per_mu_at_100_mev * table.stopping_power_mev_per_mm(100.0) / s


def weights_to_mu(weights, energy_mev, data: ProteusOneData | None = None) -> np.ndarray:
    """Spot weights (10^6 protons) to monitor units."""
    return np.asarray(weights, dtype=float) * MEGAPROTON / protons_per_mu(energy_mev, data)


def mu_to_weights(mu, energy_mev, data: ProteusOneData | None = None) -> np.ndarray:
    """Monitor units to spot weights (10^6 protons)."""
    return np.asarray(mu, dtype=float) * protons_per_mu(energy_mev, data) / MEGAPROTON


# --- pencil-beam machine ----------------------------------------------------------------------


@functools.cache
def build_proteus_one_machine(data: ProteusOneData | None = None) -> Machine:
    """Pencil-beam machine of the Proteus One with PSTAR ranges.

    Energies from ``energy_min_mev`` to ``energy_max_mev`` spaced by ``layer_spacing_mm`` of
    CSDA range.  Each energy's Bortfeld depth dose (with the data's ``energy_spread_fraction``
    and ``idd_tail_fraction``) is computed for the Bragg-Kleeman energy that has the same
    range as PSTAR gives for the beam's mean energy (the nominal energy plus
    ``mean_energy_offset_mev``), so the curve's distal 80 % depth sits at that PSTAR CSDA
    range.
    """
    data = data or load_proteus_one()
    table = load_pstar_water()
    r_min = float(table.range_mm(data.energy_min_mev))
    r_max = float(table.range_mm(data.energy_max_mev))
    ranges = np.append(np.arange(r_min, r_max, data.layer_spacing_mm), r_max)
    energies = np.round(table.energy_mev_for_range(ranges), 3)
    offsets_mev = np.zeros_like(energies)
    if data.mean_energy_offset_mev:
        table_off = np.array(data.mean_energy_offset_mev, dtype=float)
        offsets_mev = np.interp(energies, table_off[:, 0], table_off[:, 1])
    ranges = table.range_mm(energies + offsets_mev)
    spot = np.array(data.spot_sigma_in_air_at_isocentre_mm)
    sig_iso = np.interp(energies, spot[:, 0], spot[:, 1])
    offsets = np.array([-300.0, 0.0, 300.0])
    depths, idds, sigmas, peaks, r80s = [], [], [], [], []
    for r in ranges:
        e_bk = float(bragg_kleeman_energy_mev(r))
        d = _depth_samples_mm(r)
        idd = bortfeld_idd(
            d,
            e_bk,
            energy_spread_fraction=data.energy_spread_fraction,
            tail_fraction=data.idd_tail_fraction,
            gamma_nuclear=data.nuclear_local_fraction,
            nuclear_buildup_mm=data.nuclear_buildup_mm,
        )
        depths.append(d)
        idds.append(idd)
        sigmas.append(multiple_scattering_sigma_mm(d, e_bk))
        peaks.append(peak_depth_mm(d, idd))
        r80s.append(distal_depth_mm(d, idd, 0.8))
    return Machine(
        name=data.name,
        energies_mev=energies,
        depths_mm=depths,
        idd=idds,
        sigma_mcs_mm=sigmas,
        peak_depth_mm=np.asarray(peaks),
        range_r80_mm=np.asarray(r80s),
        focus_distance_mm=data.sad_mm + offsets,
        focus_sigma_mm=np.sqrt(sig_iso[:, None] ** 2 + (1.5e-3 * offsets) ** 2),
        sad_mm=data.sad_mm,
        nozzle_to_isocentre_mm=data.nozzle_to_isocentre_mm,
        source=(
            f"protonpath.planning.proteus_one, {DATA_FILE} version {data.version}: nominal "
            "energies with NIST PSTAR CSDA ranges in water, Bortfeld 1997 depth doses, "
            "Fermi-Eyges/Gottschalk lateral widening. Not commissioning data."
        ),
        meta={"proteus_one_version": data.version},
    )


# --- range shifter ----------------------------------------------------------------------------


def needs_range_shifter(proximal_wed_mm: float, machine: Machine, margin_mm: float = 0.0) -> bool:
    """Whether a target whose proximal edge is at ``proximal_wed_mm`` (water-equivalent depth,
    less ``margin_mm``) lies shallower than the Bragg peak of the machine's lowest energy."""
    return float(proximal_wed_mm) - margin_mm < float(np.min(machine.peak_depth_mm))


def highland_theta_rad(energy_mev: float, thickness_mm: float, radiation_length_mm: float):
    """Highland's (PDG) rms projected scattering angle of protons through a slab."""
    t = np.asarray(energy_mev, dtype=float)
    pv = t * (t + 2 * PROTON_MASS_MEV) / (t + PROTON_MASS_MEV)
    x = thickness_mm / radiation_length_mm
    return 13.6 / pv * np.sqrt(x) * (1 + 0.038 * np.log(x))


def machine_with_range_shifter(machine: Machine, shifter: RangeShifter) -> Machine:
    """The machine as seen through a range shifter in the nozzle.

    Depths pull back by the shifter's water-equivalent thickness (the depth-dose and multiple
    scattering tables are read ``WET`` deeper); the scattering in the slab then reaches the
    patient across the air gap, adding ``(theta * gap)^2`` to the spot variance in air, where
    ``gap`` is the distance from the slab to the point (``theta`` from Highland's formula for
    the slab's material; the slab's own part of the water scattering is taken out so it is
    not counted twice).
    """
    wet = float(shifter.water_equivalent_thickness_mm)
    source_to_rs = machine.sad_mm - shifter.isocentre_to_range_shifter_mm
    depths, idds, sigmas = [], [], []
    peaks, r80s = [], []
    for e in range(machine.n_energies):
        d_old = machine.depths_mm[e]
        keep = d_old >= wet
        d_new = d_old[keep] - wet
        d_new = np.concatenate([[0.0], d_new]) if d_new[0] > 0 else d_new
        idd = np.interp(d_new + wet, d_old, machine.idd[e])
        sig_full = np.interp(d_new + wet, d_old, machine.sigma_mcs_mm[e])
        sig_slab = float(np.interp(wet, d_old, machine.sigma_mcs_mm[e]))
        sigmas.append(np.sqrt(np.clip(sig_full**2 - sig_slab**2, 0.0, None)))
        depths.append(d_new)
        idds.append(idd)
        peaks.append(machine.peak_depth_mm[e] - wet)
        r80s.append(machine.range_r80_mm[e] - wet)
    theta = highland_theta_rad(
        machine.energies_mev, shifter.physical_thickness_mm, shifter.radiation_length_mm
    )
    gap = np.clip(machine.focus_distance_mm - source_to_rs, 0.0, None)
    focus = np.sqrt(machine.focus_sigma_mm**2 + (theta[:, None] * gap[None, :]) ** 2)
    meta = dict(machine.meta)
    meta["range_shifter"] = dataclasses.asdict(shifter)
    return dataclasses.replace(
        machine,
        name=machine.name,
        depths_mm=depths,
        idd=idds,
        sigma_mcs_mm=sigmas,
        peak_depth_mm=np.asarray(peaks),
        range_r80_mm=np.asarray(r80s),
        focus_sigma_mm=focus,
        meta=meta,
    )


def range_shifter_of(machine: Machine) -> RangeShifter | None:
    """The range shifter a machine was built with (:func:`machine_with_range_shifter`)."""
    rs = machine.meta.get("range_shifter")
    return RangeShifter(**rs) if rs else None


# --- lateral halo -----------------------------------------------------------------------------


def halo_weight(depth_mm, range_mm, data: ProteusOneData | None = None):
    """Fraction of a spot's dose in the wide (halo) Gaussian at ``depth_mm``."""
    data = data or load_proteus_one()
    frac = np.clip(np.asarray(depth_mm, dtype=float) / float(range_mm), 0.0, 1.0)
    return np.clip(data.halo_weight_at_surface + data.halo_weight_per_range * frac, 0.0, 0.5)


def lateral_profile(
    r_mm, sigma_core_mm, *, halo: bool = True, weight=0.0, sigma_factor: float = 3.0
):
    """Planar lateral dose of one spot (per mm^2, integrating to 1) at distance ``r_mm``.

    ``halo=False`` is the single Gaussian the dose engine uses; ``halo=True`` the double
    Gaussian ``(1 - w) G(sigma) + w G(k sigma)``.
    """
    r = np.asarray(r_mm, dtype=float)

    def gauss(s):
        return np.exp(-0.5 * r**2 / s**2) / (2 * np.pi * s**2)

    core = gauss(sigma_core_mm)
    if not halo:
        return core
    return (1 - weight) * core + weight * gauss(sigma_factor * sigma_core_mm)


def field_dose_centre(
    field_side_mm: float,
    sigma_core_mm: float,
    *,
    spacing_mm: float = 2.5,
    halo: bool = True,
    weight: float = 0.0,
    sigma_factor: float = 3.0,
    offset_mm: float = 0.0,
) -> float:
    """Dose at ``(offset_mm, 0)`` of a square field of equal-weight spots of side ``field_side_mm``
    (one unit of fluence per spot, spots on a lattice of ``spacing_mm``)."""
    n = max(int(round(field_side_mm / spacing_mm)), 1)
    pos = (np.arange(n) - (n - 1) / 2) * spacing_mm
    u, v = np.meshgrid(pos, pos)
    r = np.hypot(u.ravel() - offset_mm, v.ravel())
    return float(
        lateral_profile(r, sigma_core_mm, halo=halo, weight=weight, sigma_factor=sigma_factor).sum()
    )


def field_size_factor(
    field_side_mm: float,
    sigma_core_mm: float,
    *,
    reference_side_mm: float = 100.0,
    spacing_mm: float = 2.5,
    halo: bool = True,
    weight: float = 0.0,
    sigma_factor: float = 3.0,
) -> float:
    """Central dose of a field relative to a ``reference_side_mm`` field (same spot weights)."""
    kw = dict(spacing_mm=spacing_mm, halo=halo, weight=weight, sigma_factor=sigma_factor)
    return field_dose_centre(field_side_mm, sigma_core_mm, **kw) / field_dose_centre(
        reference_side_mm, sigma_core_mm, **kw
    )


def wide_machine(machine: Machine, sigma_factor: float) -> Machine:
    """The machine with every lateral width (in air and in water) times ``sigma_factor``: the
    halo Gaussian of the double-Gaussian model, computed by the same dose engine."""
    return dataclasses.replace(
        machine,
        focus_sigma_mm=machine.focus_sigma_mm * sigma_factor,
        sigma_mcs_mm=[s * sigma_factor for s in machine.sigma_mcs_mm],
    )


def halo_dose_matrix(
    spr,
    ct_grid,
    dose_grid,
    voxel_mask,
    beams,
    spots,
    machine: Machine,
    core=None,
    *,
    weight: float | None = None,
    sigma_factor: float | None = None,
    data: ProteusOneData | None = None,
    along_depth: bool = False,
):
    """Dose-influence matrix with the double-Gaussian lateral model (selectable: the single
    Gaussian matrix is the engine's default).

    ``D = (1 - w) D_core + w D_wide`` with ``D_wide`` from :func:`wide_machine`; ``w`` defaults
    to the data's halo weight at half the range, constant along depth, or with
    ``along_depth=True`` to :func:`halo_weight` at each voxel's water-equivalent depth over the
    spot's R80 (the nuclear halo grows with depth).  ``core`` is the single-Gaussian matrix
    when already computed.
    """
    from protonpath.planning.dose import DoseMatrix, compute_dose_matrix
    from protonpath.planning.raytrace import water_equivalent_depth

    data = data or load_proteus_one()
    k = data.halo_sigma_factor if sigma_factor is None else sigma_factor
    w = float(halo_weight(0.5, 1.0, data)) if weight is None else float(weight)
    if core is None:
        core = compute_dose_matrix(spr, ct_grid, dose_grid, voxel_mask, beams, spots, machine)
    wide = compute_dose_matrix(
        spr, ct_grid, dose_grid, voxel_mask, beams, spots, wide_machine(machine, k)
    )
    if not np.array_equal(core.voxel_indices, wide.voxel_indices):
        raise ValueError("core and halo matrices cover different voxels")
    if not along_depth:
        return DoseMatrix((1 - w) * core.matrix + w * wide.matrix, core.voxel_indices, core.grid)
    points = dose_grid.points_mm(core.voxel_indices)
    wed = np.stack(
        [water_equivalent_depth(spr, ct_grid, b, machine.sad_mm, points).wed_mm for b in beams]
    )
    r80 = machine.range_r80_mm[spots.energy_index]
    a = core.matrix.tocsc()
    b = wide.matrix.tocsc()
    a.sort_indices()
    b.sort_indices()
    dtype = np.result_type(a.dtype, b.dtype)
    args = (
        a.indptr, a.indices, a.data.astype(dtype, copy=False),
        b.indptr, b.indices, b.data.astype(dtype, copy=False),
        np.asarray(spots.beam_index, dtype=np.int64), np.asarray(r80, dtype=np.float64), wed,
        float(data.halo_weight_at_surface), float(data.halo_weight_per_range),
    )  # fmt: skip
    counts = _merged_column_counts(*args[:6])
    indptr = np.zeros(a.shape[1] + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.empty(indptr[-1], dtype=np.int32)
    values = np.empty(indptr[-1], dtype=dtype)
    _merge_depth_weighted(*args, indptr, indices, values)
    combined = sp.csc_matrix((values, indices, indptr), shape=a.shape)
    return DoseMatrix(combined, core.voxel_indices, core.grid)


@numba.njit(cache=True, parallel=True)
def _merged_column_counts(ap, ai, ad, bp, bi, bd):
    """Non-zero entries per column of the union of two CSC patterns (sorted row indices;
    the matrices' values are non-negative, so a sum is 0 only where both are)."""
    n = len(ap) - 1
    out = np.zeros(n, dtype=np.int64)
    for j in numba.prange(n):
        p, q, k = ap[j], bp[j], 0
        while p < ap[j + 1] or q < bp[j + 1]:
            if q >= bp[j + 1] or (p < ap[j + 1] and ai[p] < bi[q]):
                nonzero = ad[p] != 0
                p += 1
            elif p >= ap[j + 1] or bi[q] < ai[p]:
                nonzero = bd[q] != 0
                q += 1
            else:
                nonzero = ad[p] != 0 or bd[q] != 0
                p += 1
                q += 1
            if nonzero:
                k += 1
        out[j] = k
    return out


@numba.njit(cache=True, parallel=True)
def _merge_depth_weighted(ap, ai, ad, bp, bi, bd, beam, r80, wed, w0, w1, op, oi, od):
    """``(1 - w) core + w wide`` per entry, ``w`` the halo weight at the row's depth over the
    column's R80 (:func:`_halo_weight_ratio`), written into the union pattern."""
    n = len(ap) - 1
    for j in numba.prange(n):
        p, q, k = ap[j], bp[j], op[j]
        depth = wed[beam[j]]
        while p < ap[j + 1] or q < bp[j + 1]:
            core = 0.0
            wide = 0.0
            if q >= bp[j + 1] or (p < ap[j + 1] and ai[p] < bi[q]):
                row = ai[p]
                core = ad[p]
                p += 1
            elif p >= ap[j + 1] or bi[q] < ai[p]:
                row = bi[q]
                wide = bd[q]
                q += 1
            else:
                row = ai[p]
                core = ad[p]
                wide = bd[q]
                p += 1
                q += 1
            if core == 0 and wide == 0:
                continue
            frac = min(max(depth[row] / r80[j], 0.0), 1.0)
            w = min(max(w0 + w1 * frac, 0.0), 0.5)
            oi[k] = row
            od[k] = (1.0 - w) * core + w * wide
            k += 1


def _halo_weight_ratio(depth_mm, range_mm, data: ProteusOneData):
    """:func:`halo_weight` for arrays of depths and ranges."""
    frac = np.clip(np.asarray(depth_mm, dtype=float) / np.asarray(range_mm, dtype=float), 0, 1)
    return np.clip(data.halo_weight_at_surface + data.halo_weight_per_range * frac, 0.0, 0.5)
