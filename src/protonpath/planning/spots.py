"""Spot and energy-layer placement over the target.

Spots sit on a square lattice on each beam's isocentre plane (BEV ``u, v`` in mm).  A lattice
position gets spots if the target, widened by a lateral margin, projects onto it; it gets
one spot per energy layer whose Bragg peak lies within the target's water-equivalent depth
along that position, widened by proximal and distal margins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from protonpath.planning.machine import Machine
from protonpath.planning.raytrace import BeamView


@dataclass(frozen=True)
class Spots:
    """Pencil-beam spots of a plan, one entry per spot.

    Attributes
    ----------
    beam_index : ndarray of int
        Which beam of the plan.
    energy_index : ndarray of int
        Index into the machine's energies.
    energy_mev : ndarray of float
        Nominal energy.
    u_mm, v_mm : ndarray of float
        Position on the isocentre plane in the beam's eye view.
    """

    beam_index: np.ndarray
    energy_index: np.ndarray
    energy_mev: np.ndarray
    u_mm: np.ndarray
    v_mm: np.ndarray

    def __len__(self) -> int:
        return len(self.beam_index)

    def subset(self, selection) -> Spots:
        return Spots(
            self.beam_index[selection],
            self.energy_index[selection],
            self.energy_mev[selection],
            self.u_mm[selection],
            self.v_mm[selection],
        )


def concatenate_spots(parts) -> Spots:
    """One :class:`Spots` from several (e.g. one per beam)."""
    parts = list(parts)
    return Spots(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = ("beam_index", "energy_index", "energy_mev", "u_mm", "v_mm")


def spots_from_arrays(machine: Machine, beam_index, energy_mev, u_mm, v_mm) -> Spots:
    """Spots from plain arrays; energies must be in the machine's base data."""
    energy_mev = np.asarray(energy_mev, dtype=float)
    return Spots(
        np.asarray(beam_index, dtype=np.int32),
        machine.energy_index(energy_mev).astype(np.int32),
        energy_mev,
        np.asarray(u_mm, dtype=float),
        np.asarray(v_mm, dtype=float),
    )


def select_energy_layers(machine: Machine, layer_spacing_mm: float) -> np.ndarray:
    """Indices of machine energies whose Bragg peaks are at least ``layer_spacing_mm`` apart."""
    peaks = machine.peak_depth_mm
    chosen = [int(np.argmax(peaks))]
    for i in np.argsort(peaks)[::-1]:
        if peaks[chosen[-1]] - peaks[i] >= layer_spacing_mm - 1e-9:
            chosen.append(int(i))
    return np.array(sorted(set(chosen), key=lambda i: peaks[i]))


def place_spots(
    target_view: BeamView,
    machine: Machine,
    beam_index: int = 0,
    spot_spacing_mm: float = 5.0,
    lateral_margin_mm: float = 3.0,
    layer_spacing_mm: float = 3.0,
    proximal_margin_mm: float = 3.0,
    distal_margin_mm: float = 3.0,
) -> Spots:
    """Spots covering the target for one beam.

    Parameters
    ----------
    target_view : BeamView
        The target's voxels seen from the beam (see :func:`raytrace.water_equivalent_depth`).
    machine : Machine
        Available energies.
    beam_index : int
        Index of the beam in the plan.
    spot_spacing_mm : float
        Lateral lattice spacing on the isocentre plane.
    lateral_margin_mm : float
        Lateral widening of the target's projection.
    layer_spacing_mm : float
        Minimal spacing of Bragg peak depths between energy layers.
    proximal_margin_mm, distal_margin_mm : float
        Widening of the target's water-equivalent depth range along each lattice position.

    Returns
    -------
    Spots
        Ordered by energy layer (highest first), then lattice position.
    """
    if len(target_view.u_mm) == 0:
        raise ValueError("the target has no voxel")
    s = spot_spacing_mm
    ia = np.rint(target_view.u_mm / s).astype(int)
    ib = np.rint(target_view.v_mm / s).astype(int)
    reach = int(np.ceil((lateral_margin_mm + 0.5 * s) / s))
    a0, b0 = ia.min() - reach, ib.min() - reach
    shape = (ia.max() - a0 + reach + 1, ib.max() - b0 + reach + 1)
    wmin = np.full(shape, np.inf)
    wmax = np.full(shape, -np.inf)
    np.minimum.at(wmin, (ia - a0, ib - b0), target_view.wed_mm)
    np.maximum.at(wmax, (ia - a0, ib - b0), target_view.wed_mm)
    occupied = np.isfinite(wmin)
    # positions within the lateral margin of an occupied bin inherit its depth range
    r = lateral_margin_mm / s
    n = int(np.ceil(r))
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    disk = (xx**2 + yy**2) <= r**2 + 1e-9
    wmin_d = -ndimage.grey_dilation(np.where(occupied, -wmin, -1e9), footprint=disk)
    wmax_d = ndimage.grey_dilation(np.where(occupied, wmax, -1e9), footprint=disk)
    lattice = ndimage.binary_dilation(occupied, structure=disk)

    layers = select_energy_layers(machine, layer_spacing_mm)
    peaks = machine.peak_depth_mm[layers]
    out_b, out_e, out_u, out_v = [], [], [], []
    pa, pb = np.nonzero(lattice)
    lo = wmin_d[pa, pb] - proximal_margin_mm
    hi = wmax_d[pa, pb] + distal_margin_mm
    for layer, peak in sorted(zip(layers, peaks, strict=True), key=lambda t: -t[1]):
        on = (peak >= lo) & (peak <= hi)
        if not on.any():
            continue
        out_b.append(np.full(on.sum(), beam_index))
        out_e.append(np.full(on.sum(), layer))
        out_u.append((pa[on] + a0) * s)
        out_v.append((pb[on] + b0) * s)
    if not out_b:
        raise ValueError("no machine energy reaches the target")
    e_idx = np.concatenate(out_e).astype(np.int32)
    return Spots(
        np.concatenate(out_b).astype(np.int32),
        e_idx,
        machine.energies_mev[e_idx],
        np.concatenate(out_u).astype(float),
        np.concatenate(out_v).astype(float),
    )
