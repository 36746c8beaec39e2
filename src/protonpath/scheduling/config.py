"""Load the gantry day configuration from ``data/gantry_day.toml`` (pure: reads package data)."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources

from protonpath.scheduling.model import GantryDay, SessionCategory, TimeBlock, Urgency


def clock_to_min(clock: str) -> int:
    """Minutes after midnight of a ``"HH:MM"`` clock time."""
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def min_to_clock(minutes: int) -> str:
    """``"HH:MM"`` of a time given in minutes after midnight."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def gantry_day_from_dict(data: dict) -> GantryDay:
    """Build a :class:`GantryDay` from the parsed TOML document."""
    categories = {
        key: SessionCategory(
            key=key,
            label=value["label"],
            session_duration_min=int(value["session_duration_min"]),
            first_session_duration_min=int(value["first_session_duration_min"]),
            anaesthesia=bool(value["anaesthesia"]),
        )
        for key, value in data["categories"].items()
    }
    urgencies = {
        name: Urgency(name=name, due_working_days=int(days), waiting_weight=int(weight))
        for name, (days, weight) in data["urgency"].items()
    }
    qa_blocks = tuple(
        TimeBlock(block["label"], clock_to_min(block["start"]), clock_to_min(block["end"]))
        for block in data.get("qa_blocks", [])
    )
    return GantryDay(
        opening_min=clock_to_min(data["day"]["opening"]),
        closing_min=clock_to_min(data["day"]["closing"]),
        time_step_min=int(data["day"]["time_step_min"]),
        qa_blocks=qa_blocks,
        anaesthesia_earliest_start_min=clock_to_min(data["anaesthesia"]["earliest_start"]),
        anaesthesia_latest_start_min=clock_to_min(data["anaesthesia"]["latest_start"]),
        max_start_shift_min=int(data["time_of_day"]["max_start_shift_min"]),
        usual_window_min=int(data["time_of_day"]["usual_window_min"]),
        categories=categories,
        urgencies=urgencies,
        source=dict(data.get("source", {})),
    )


@cache
def default_gantry_day() -> GantryDay:
    """The department's gantry day, from the packaged ``gantry_day.toml``."""
    text = resources.files("protonpath.scheduling").joinpath("data/gantry_day.toml").read_text()
    return gantry_day_from_dict(tomllib.loads(text))
