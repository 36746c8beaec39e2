"""Spot and energy-layer placement over the target.

Spots sit on a square lattice on each beam's isocentre plane (BEV ``u, v`` in mm).  A lattice
position gets spots if the target, widened by a lateral margin, projects onto it; it gets
one spot per energy layer whose Bragg peak lies within the target's water-equivalent depth
along that position, widened by proximal and distal margins (see :func:`place_spots`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

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


def select_energy_layers(
    machine: Machine, layer_spacing_mm: float, deepest_mm: float | None = None
):
    """Indices of machine energies whose Bragg peaks are at least ``layer_spacing_mm`` apart.

    The ladder starts at the shallowest peak at or beyond ``deepest_mm`` (default: the
    machine's deepest peak) and goes upstream, so the distal layer sits on the target's edge.
    """
    peaks = machine.peak_depth_mm
    order = np.argsort(peaks)[::-1]
    if deepest_mm is None:
        start = int(order[0])
    else:
        beyond = np.flatnonzero(peaks >= deepest_mm)
        start = int(beyond[np.argmin(peaks[beyond])]) if len(beyond) else int(order[0])
    chosen = [start]
    for i in order:
        if peaks[chosen[-1]] - peaks[i] >= layer_spacing_mm - 1e-9:
            chosen.append(int(i))
    return np.array(sorted(set(chosen), key=lambda i: peaks[i]))


def place_spots(
    target_view: BeamView,
    machine: Machine,
    beam_index: int = 0,
    spot_spacing_mm: float = 5.0,
    lateral_margin_mm: float = 6.0,
    layer_spacing_mm: float = 3.0,
    proximal_margin_mm: float = 3.0,
    distal_margin_mm: float = 3.0,
) -> Spots:
    """Spots covering the target for one beam.

    A lattice position (spacing ``spot_spacing_mm``, through the isocentre) is kept when a
    target voxel projects within ``lateral_margin_mm`` of it; its depth range is that of the
    target voxels projecting within ``max(lateral_margin_mm, spot_spacing_mm)``, widened by the
    proximal and distal margins.  It gets every layer whose peak lies in that range and the
    first layer beyond it, so the distal edge is always covered.

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
    uv = np.column_stack([target_view.u_mm, target_view.v_mm])
    tree = cKDTree(uv)
    ia = np.arange(
        np.floor((uv[:, 0].min() - lateral_margin_mm) / s),
        np.ceil((uv[:, 0].max() + lateral_margin_mm) / s) + 1,
    )
    ib = np.arange(
        np.floor((uv[:, 1].min() - lateral_margin_mm) / s),
        np.ceil((uv[:, 1].max() + lateral_margin_mm) / s) + 1,
    )
    lattice = np.array(np.meshgrid(ia * s, ib * s, indexing="ij")).reshape(2, -1).T
    near, _ = tree.query(lattice, distance_upper_bound=lateral_margin_mm + 1e-9)
    lattice = lattice[np.isfinite(near)]
    wed = np.asarray(target_view.wed_mm, dtype=float)
    neighbours = tree.query_ball_point(lattice, max(lateral_margin_mm, s) + 1e-9)
    lo = np.array([wed[n].min() for n in neighbours]) - proximal_margin_mm
    hi = np.array([wed[n].max() for n in neighbours]) + distal_margin_mm

    layers = select_energy_layers(machine, layer_spacing_mm, deepest_mm=float(hi.max()))
    peaks = machine.peak_depth_mm[layers]  # ascending
    # per position: layers within [lo, hi] and the first one beyond hi
    first_beyond = np.searchsorted(peaks, hi, side="left")
    out_e, out_u, out_v = [], [], []
    for k in range(len(layers) - 1, -1, -1):
        on = ((peaks[k] >= lo) & (peaks[k] <= hi)) | (first_beyond == k)
        if on.any():
            out_e.append(np.full(on.sum(), layers[k]))
            out_u.append(lattice[on, 0])
            out_v.append(lattice[on, 1])
    if not out_e:
        raise ValueError("no machine energy reaches the target")
    e_idx = np.concatenate(out_e).astype(np.int32)
    return Spots(
        np.full(len(e_idx), beam_index, dtype=np.int32),
        e_idx,
        machine.energies_mev[e_idx],
        np.concatenate(out_u).astype(float),
        np.concatenate(out_v).astype(float),
    )
