"""How long one fraction of a plan takes at the gantry. Pure: no Django.

Setup time per category plus, per field, its overhead (gantry move, imaging, patient check:
``delivery.toml``) and its beam delivery time, rounded up to the gantry day's time step.
The beam delivery time of a field is the Proteus One model's estimate
(:func:`protonpath.planning.delivery_time.fraction_delivery_time`: energy-layer switching,
spot scanning, beam-on in whole pulses, burst switching; figures in
``planning/data/proteus_one.json``), so the booked session follows the plan's layers, spots and
spot weights rather than a flat time per spot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def session_minutes(
    field_delivery_s: Iterable[float],
    *,
    setup_minutes: float,
    field_overhead_s: float,
    round_to_min: int = 5,
) -> int:
    """Minutes to book for one fraction; ``field_delivery_s`` gives each field's beam delivery time."""
    seconds = setup_minutes * 60.0
    for delivery_s in field_delivery_s:
        seconds += field_overhead_s + float(delivery_s)
    step = max(int(round_to_min), 1)
    return int(math.ceil(seconds / 60.0 / step) * step)
