"""Beam delivery time of a PBS plan on the Proteus One, per field and per fraction.

The model follows the components Zhao et al. (Radiat Oncol 17:87, 2022) measured on the
Proteus One's log files: energy-layer switching (slower upward than downward), spot switching
(the scanning magnets' move, the slower axis deciding, plus settling), spot spill (beam-on: a
whole number of 1 ms pulses, each carrying at most ``max_mu_per_pulse``, plus a dead time) and
burst switching between the bursts a layer is cut into.  The figures are those of
:class:`protonpath.planning.proteus_one.ProteusOneData` (mostly parameters: see
``proteus_one.json``).

Within a field, layers go from the highest energy down (downward switches only); within a layer
spots are painted in serpentine rows.  A fraction is its fields plus ``field_setup_s`` between
two fields.  :func:`fraction_delivery_time` is what the schedule uses for the beam part of a
session.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from protonpath.planning.proteus_one import ProteusOneData, load_proteus_one, weights_to_mu


@dataclass(frozen=True)
class FieldTime:
    """Delivery time of one field (seconds)."""

    beam_index: int
    energy_layers: int
    spots: int
    bursts: int
    layer_switching_s: float
    scanning_s: float
    beam_on_s: float
    burst_switching_s: float

    @property
    def total_s(self) -> float:
        return self.layer_switching_s + self.scanning_s + self.beam_on_s + self.burst_switching_s


@dataclass(frozen=True)
class FractionTime:
    """Delivery time of one fraction: its fields and the setup between them (seconds)."""

    fields: tuple
    field_setup_s: float

    @property
    def energy_layers(self) -> int:
        return sum(f.energy_layers for f in self.fields)

    @property
    def spots(self) -> int:
        return sum(f.spots for f in self.fields)

    @property
    def beam_on_s(self) -> float:
        return sum(f.beam_on_s for f in self.fields)

    @property
    def total_s(self) -> float:
        return sum(f.total_s for f in self.fields) + self.field_setup_s

    def as_dict(self) -> dict:
        fields = []
        for f in self.fields:
            row = asdict(f)
            row["total_s"] = f.total_s
            fields.append(row)
        return {
            "fields": fields,
            "energy_layers": self.energy_layers,
            "spots": self.spots,
            "field_setup_s": self.field_setup_s,
            "beam_on_s": self.beam_on_s,
            "total_s": self.total_s,
        }


def serpentine_order(u_mm: np.ndarray, v_mm: np.ndarray, row_tol_mm: float = 0.5) -> np.ndarray:
    """Indices painting spots in rows of ``v``, alternating the ``u`` direction."""
    u = np.asarray(u_mm, dtype=float)
    v = np.asarray(v_mm, dtype=float)
    if len(u) == 0:
        return np.zeros(0, dtype=int)
    row = np.round((v - v.min()) / max(row_tol_mm, 1e-9) / 2).astype(int)
    order = []
    for i, r in enumerate(np.unique(row)):
        idx = np.flatnonzero(row == r)
        idx = idx[np.argsort(u[idx], kind="stable")]
        order.extend(idx if i % 2 == 0 else idx[::-1])
    return np.asarray(order, dtype=int)


def spot_beam_on_s(mu: np.ndarray, data: ProteusOneData) -> np.ndarray:
    """Beam-on time of each spot: whole pulses plus the dead time."""
    pulses = np.ceil(np.asarray(mu, dtype=float) / data.max_mu_per_pulse - 1e-9)
    pulses = np.maximum(pulses, 1.0)
    return (pulses * data.pulse_period_ms + data.spot_dead_time_ms) * 1e-3


def field_delivery_time(
    spots, weights, beam_index: int, data: ProteusOneData | None = None
) -> FieldTime:
    """Delivery time of the spots of ``beam_index`` with a non-zero weight."""
    data = data or load_proteus_one()
    w = np.asarray(weights, dtype=float)
    sel = np.flatnonzero((spots.beam_index == beam_index) & (w > 0))
    energies = np.unique(spots.energy_mev[sel])[::-1]  # deepest layer first
    mu = weights_to_mu(w[sel], spots.energy_mev[sel], data)
    beam_on = float(spot_beam_on_s(mu, data).sum()) if len(sel) else 0.0
    scanning, bursts = 0.0, 0
    vx, vy = data.scanning_speed_x_mm_per_ms, data.scanning_speed_y_mm_per_ms
    for e in energies:
        on = sel[spots.energy_mev[sel] == e]
        order = on[serpentine_order(spots.u_mm[on], spots.v_mm[on])]
        du = np.abs(np.diff(spots.u_mm[order]))
        dv = np.abs(np.diff(spots.v_mm[order]))
        moves = np.maximum(du / vx, dv / vy) + data.spot_settling_ms
        scanning += float(moves.sum()) * 1e-3
        bursts += int(np.ceil(len(on) / data.spots_per_burst))
    # switches between layers: all downward in this order (the first layer is set up with
    # the field, as in Zhao et al.'s field-level times)
    switching = max(len(energies) - 1, 0) * data.layer_switch_down_s
    burst_switch = max(bursts - len(energies), 0) * data.burst_switching_s
    return FieldTime(
        int(beam_index),
        len(energies),
        len(sel),
        bursts,
        float(switching),
        float(scanning),
        beam_on,
        float(burst_switch),
    )


def fraction_delivery_time(
    spots, weights, data: ProteusOneData | None = None, n_beams: int | None = None
) -> FractionTime:
    """Delivery time of one fraction of a plan (weights per fraction, 10^6 protons).

    The schedule takes ``fraction_delivery_time(...).total_s`` as the beam time of a session.
    """
    data = data or load_proteus_one()
    n = int(n_beams if n_beams is not None else (spots.beam_index.max() + 1 if len(spots) else 0))
    fields = tuple(field_delivery_time(spots, weights, b, data) for b in range(n))
    delivered = sum(1 for f in fields if f.spots)
    return FractionTime(fields, max(delivered - 1, 0) * data.field_setup_s)


def layer_switch_time_s(energies_in_order, data: ProteusOneData | None = None) -> float:
    """Switching time of a given layer sequence (upward switches cost ``layer_switch_up_s``)."""
    data = data or load_proteus_one()
    e = np.asarray(energies_in_order, dtype=float)
    steps = np.diff(e)
    return float(
        np.count_nonzero(steps < 0) * data.layer_switch_down_s
        + np.count_nonzero(steps > 0) * data.layer_switch_up_s
    )


@dataclass(frozen=True)
class LayerReduction:
    """Result of :func:`reduce_energy_layers`."""

    weights: np.ndarray
    layers_before: int
    layers_after: int
    time_before_s: float
    time_after_s: float
    objective_before: float
    objective_after: float

    @property
    def time_saved_s(self) -> float:
        return self.time_before_s - self.time_after_s

    def as_dict(self) -> dict:
        return {
            "layers_before": self.layers_before,
            "layers_after": self.layers_after,
            "time_before_s": self.time_before_s,
            "time_after_s": self.time_after_s,
            "time_saved_s": self.time_saved_s,
            "objective_before": self.objective_before,
            "objective_after": self.objective_after,
        }


def reduce_energy_layers(
    dose_matrix,
    objectives,
    rows,
    spots,
    weights,
    *,
    layer_weight_fraction: float = 0.1,
    data: ProteusOneData | None = None,
    max_iterations: int = 200,
) -> LayerReduction:
    """Prune low-weight energy layers and re-optimise the rest within the MU limits.

    A layer is pruned when its total weight is below ``layer_weight_fraction`` times the mean
    layer weight of its field; the remaining spots are re-optimised with bounds
    ``[min MU, max MU]`` on the spots kept (those at or above half the minimum), so the plan
    stays deliverable.
    """
    from protonpath.planning.deliverability import (
        minimum_weights_from_mu,
        plan_objective,
        reoptimise_bounded,
    )

    data = data or load_proteus_one()
    w = np.asarray(weights, dtype=float)
    keep_layer = np.ones(len(w), dtype=bool)
    for b in np.unique(spots.beam_index):
        on_b = spots.beam_index == b
        energies = np.unique(spots.energy_mev[on_b & (w > 0)])
        if len(energies) == 0:
            continue
        totals = np.array([w[on_b & (spots.energy_mev == e)].sum() for e in energies])
        mean = totals.mean()
        for e, t in zip(energies, totals, strict=True):
            if t < layer_weight_fraction * mean:
                keep_layer[on_b & (spots.energy_mev == e)] = False
    lo, hi = minimum_weights_from_mu(spots, data)
    active = keep_layer & (w >= 0.5 * lo)
    new, _ = reoptimise_bounded(
        dose_matrix, objectives, rows, w, lo, hi, active=active, max_iterations=max_iterations
    )
    t_before = fraction_delivery_time(spots, w, data)
    t_after = fraction_delivery_time(spots, new, data)
    return LayerReduction(
        new,
        t_before.energy_layers,
        t_after.energy_layers,
        t_before.total_s,
        t_after.total_s,
        plan_objective(dose_matrix, objectives, rows, w),
        plan_objective(dose_matrix, objectives, rows, new),
    )
