"""How long one fraction of a plan takes at the gantry. Pure: no Django.

Setup time per category plus, per field, its overhead (gantry move, imaging) and its beam-on time
(spots and energy layer switches), rounded up to the gantry day's time step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def field_seconds(spots: int, layers: int, *, spot_s: float, layer_switch_s: float) -> float:
    """Beam-on time of one field: every spot, and the switches between its layers."""
    return spots * spot_s + max(layers - 1, 0) * layer_switch_s


def session_minutes(
    fields: Iterable[tuple[int, int]],
    *,
    setup_minutes: float,
    spot_s: float,
    layer_switch_s: float,
    field_overhead_s: float,
    round_to_min: int = 5,
) -> int:
    """Minutes to book for one fraction; ``fields`` gives (spots, energy layers) per field."""
    seconds = setup_minutes * 60.0
    for spots, layers in fields:
        seconds += field_overhead_s + field_seconds(spots, layers, spot_s=spot_s, layer_switch_s=layer_switch_s)
    step = max(int(round_to_min), 1)
    return int(math.ceil(seconds / 60.0 / step) * step)
