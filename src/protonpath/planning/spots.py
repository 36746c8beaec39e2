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

from protonpath.planning.machine import Machine, bragg_peak_width_mm
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


#: ``layer_spacing_mm`` of the automatic mode: layers spaced by the Bragg peak's width.
AUTO = "auto"
#: Level of the Bragg peak width that spaces automatic layers: W80, the distance from the
#: proximal to the distal depth where the depth dose is at 80 % of its maximum.  It is the
#: width that matters for the ripple (two neighbouring peaks spaced by their W80 cross at 80 %
#: of their maximum) and is well defined on every machine's curve, unlike W50, whose proximal
#: side is lost in the entrance plateau of high energies.
PEAK_WIDTH_LEVEL = 0.8
#: Default step of the automatic ladder in units of the current layer's W80: 1 makes the
#: neighbouring peaks cross at about 80 % of their maximum (the next layer is the nearest
#: machine energy at or beyond that step, so the crossing is at 80 % or higher).
LAYER_SPACING_FACTOR = 1.0
#: Default clamps of the automatic step (mm of water): no finer than 2 mm (the range
#: uncertainty of a layer, and delivery time), no coarser than 10 mm (deepest peaks).
MIN_LAYER_SPACING_MM = 2.0
MAX_LAYER_SPACING_MM = 10.0
#: Accepted fixed spacings (mm) of :func:`parse_layer_spacing`.
FIXED_LAYER_SPACING_RANGE_MM = (1.0, 20.0)


def parse_layer_spacing(value) -> float | str:
    """``"auto"`` or a fixed spacing in mm from text or a number (``"5"``, ``"5,5"``, ``5.0``).

    Raises ``ValueError`` (with a message naming what is accepted) for anything else, or a
    fixed spacing outside :data:`FIXED_LAYER_SPACING_RANGE_MM`.
    """
    lo, hi = FIXED_LAYER_SPACING_RANGE_MM
    text = str(value).strip().lower()
    if text == AUTO:
        return AUTO
    try:
        mm = float(text.replace(",", "."))
    except ValueError:
        raise ValueError(f"layer spacing is 'auto' or a number of mm, not {value!r}") from None
    if not (lo <= mm <= hi):  # also refuses nan
        raise ValueError(f"a fixed layer spacing is between {lo:g} and {hi:g} mm, not {value!r}")
    return mm


def bragg_peak_widths_mm(machine: Machine, level: float = PEAK_WIDTH_LEVEL) -> np.ndarray:
    """Width of each machine energy's Bragg peak at ``level`` of its maximum (W80 by default),
    measured on the machine's own depth-dose table (:func:`machine.bragg_peak_width_mm`)."""
    return np.array(
        [
            bragg_peak_width_mm(d, y, level)
            for d, y in zip(machine.depths_mm, machine.idd, strict=True)
        ]
    )


def auto_layer_spacing_mm(
    machine: Machine,
    factor: float = LAYER_SPACING_FACTOR,
    min_mm: float | None = MIN_LAYER_SPACING_MM,
    max_mm: float | None = MAX_LAYER_SPACING_MM,
) -> np.ndarray:
    """Wanted step upstream from each machine energy: ``factor`` times its W80, clamped to
    ``[min_mm, max_mm]`` (``None``: no clamp)."""
    if factor <= 0:
        raise ValueError("the layer spacing factor must be positive")
    step = factor * bragg_peak_widths_mm(machine)
    return np.clip(step, 0.0 if min_mm is None else min_mm, np.inf if max_mm is None else max_mm)


def select_energy_layers(
    machine: Machine,
    layer_spacing_mm: float | str,
    deepest_mm: float | None = None,
    *,
    factor: float = LAYER_SPACING_FACTOR,
    min_mm: float | None = MIN_LAYER_SPACING_MM,
    max_mm: float | None = MAX_LAYER_SPACING_MM,
):
    """Indices of the machine energies of a field's layers, ascending in Bragg peak depth.

    The ladder starts at the shallowest peak at or beyond ``deepest_mm`` (default: the
    machine's deepest peak) and goes upstream, so the distal layer sits on the target's edge.

    * Fixed (``layer_spacing_mm`` a number): each next layer is the deepest energy whose peak
      is at least ``layer_spacing_mm`` shallower.
    * Automatic (``"auto"``): from the current layer, the wanted step is ``factor`` times the
      current layer's W80 (:func:`auto_layer_spacing_mm`, clamped to ``[min_mm, max_mm]``); the
      next layer is the nearest machine energy whose peak is at or beyond (deeper than) the
      wanted depth and at least ``min_mm`` (and always some) shallower than the current layer,
      so the step never exceeds the wanted one and no two layers are the same.  Where the
      machine has no energy in that interval (its energies are further apart than the step),
      the next layer is the deepest energy beyond it.
    """
    peaks = np.asarray(machine.peak_depth_mm, dtype=float)
    order = np.argsort(peaks, kind="stable")
    sorted_peaks = peaks[order]
    if deepest_mm is None:
        pos = len(order) - 1
    else:
        pos = int(np.searchsorted(sorted_peaks, deepest_mm, side="left"))
        pos = min(pos, len(order) - 1)
    chosen = [pos]
    if layer_spacing_mm == AUTO:
        step = auto_layer_spacing_mm(machine, factor, min_mm, max_mm)[order]
        floor = 0.0 if min_mm is None else float(min_mm)
        while True:
            # the deepest energy allowed next: strictly shallower, and at least min_mm upstream
            upper = np.searchsorted(sorted_peaks, sorted_peaks[pos] - max(floor, 1e-9), "right")
            if upper == 0:
                break
            # the nearest at or beyond the wanted depth, else (a gap in the machine's energies
            # wider than the step) the deepest one allowed
            wanted = sorted_peaks[pos] - step[pos]
            pos = min(int(np.searchsorted(sorted_peaks, wanted - 1e-9, "left")), int(upper) - 1)
            chosen.append(pos)
    else:
        spacing = float(layer_spacing_mm)
        if not spacing > 0:
            raise ValueError("the layer spacing must be positive")
        for k in range(pos - 1, -1, -1):
            if sorted_peaks[chosen[-1]] - sorted_peaks[k] >= spacing - 1e-9:
                chosen.append(k)
    return order[np.array(sorted(chosen), dtype=int)]


def place_spots(
    target_view: BeamView,
    machine: Machine,
    beam_index: int = 0,
    spot_spacing_mm: float = 5.0,
    lateral_margin_mm: float = 6.0,
    layer_spacing_mm: float | str = 3.0,
    proximal_margin_mm: float = 3.0,
    distal_margin_mm: float = 3.0,
    *,
    layer_spacing_factor: float = LAYER_SPACING_FACTOR,
    min_layer_spacing_mm: float | None = MIN_LAYER_SPACING_MM,
    max_layer_spacing_mm: float | None = MAX_LAYER_SPACING_MM,
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
    layer_spacing_mm : float or "auto"
        Spacing of Bragg peak depths between energy layers: a fixed minimum in mm, or
        ``"auto"``, a step of ``layer_spacing_factor`` times the Bragg peak's W80 clamped to
        ``[min_layer_spacing_mm, max_layer_spacing_mm]`` (see :func:`select_energy_layers`).
    proximal_margin_mm, distal_margin_mm : float
        Widening of the target's water-equivalent depth range along each lattice position.
    layer_spacing_factor, min_layer_spacing_mm, max_layer_spacing_mm : float
        The automatic mode's step factor and clamps.

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

    layers = select_energy_layers(
        machine,
        layer_spacing_mm,
        deepest_mm=float(hi.max()),
        factor=layer_spacing_factor,
        min_mm=min_layer_spacing_mm,
        max_mm=max_layer_spacing_mm,
    )
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


def layer_spacing_record(
    spots: Spots,
    machine: Machine,
    layer_spacing_mm: float | str,
    factor: float = LAYER_SPACING_FACTOR,
    min_mm: float | None = MIN_LAYER_SPACING_MM,
    max_mm: float | None = MAX_LAYER_SPACING_MM,
) -> dict:
    """How a plan's layers were spaced, for its summary: the mode and its parameters, and the
    Bragg peak spacing between neighbouring layers of a field (smallest and largest, mm; None
    when no field has two layers)."""
    gaps = []
    for b in np.unique(spots.beam_index):
        peaks = np.unique(machine.peak_depth_mm[spots.energy_index[spots.beam_index == b]])
        gaps.extend(np.diff(peaks))
    record: dict = (
        {"mode": AUTO, "factor": float(factor), "width": f"W{round(100 * PEAK_WIDTH_LEVEL)}",
         "min_mm": min_mm, "max_mm": max_mm}
        if layer_spacing_mm == AUTO
        else {"mode": "fixed", "mm": float(layer_spacing_mm)}
    )  # fmt: skip
    record["spacing_mm"] = (
        [round(float(min(gaps)), 2), round(float(max(gaps)), 2)] if gaps else None
    )
    return record
