"""The treatment app's data files, read once: structure names, templates per indication category,
delivery-time figures. Pure: no Django (tested on its own)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).parent / "data"

#: the department's lateral dose model of the pencil beams (planning.pipeline.LATERAL_MODELS): the
#: double Gaussian whose halo grows with depth, the one checked against MCsquare
#: (bench/dose_accuracy.py); the single Gaussian puts about 3.5 % more dose in the target
DEFAULT_LATERAL_MODEL = "halo-depth"
TARGET, OAR, EXTERNAL = "target", "oar", "external"


def _load(name: str) -> dict:
    return tomllib.loads((DATA / name).read_text(encoding="utf-8"))


@cache
def structure_names() -> dict:
    return _load("structure_names.toml")


@cache
def templates() -> dict:
    return _load("templates.toml")["categories"]


@cache
def delivery() -> dict:
    return _load("delivery.toml")



def goal_met(value: float, op: str, limit: float) -> bool:
    """Whether a clinical goal's value meets its limit (``>=`` or ``<=``, within 1e-9)."""
    return bool(value >= limit - 1e-9) if op == ">=" else bool(value <= limit + 1e-9)

def _key(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "", name.strip().lower())


@dataclass(frozen=True)
class NamedStructure:
    name: str  # as in the structure set
    standard: str  # TG-263-like, or the name itself when unknown
    role: str  # target, oar, external


def normalise(name: str, interpreted_type: str = "") -> NamedStructure:
    """The standard name and role of a structure set's ROI (``interpreted_type``: its RT ROI
    Interpreted Type, used when the name says nothing)."""
    data = structure_names()
    key = _key(name)
    alias = data["aliases"].get(key)
    if alias:
        return NamedStructure(name, alias[0], alias[1])
    if any(key.startswith(p) for p in data["target_prefixes"]):
        return NamedStructure(name, name.strip().replace(" ", "_"), TARGET)
    kind = interpreted_type.upper()
    if kind in ("PTV", "CTV", "GTV", "ITV"):
        return NamedStructure(name, name.strip().replace(" ", "_"), TARGET)
    if kind == "EXTERNAL":
        return NamedStructure(name, "External", EXTERNAL)
    return NamedStructure(name, name.strip().replace(" ", "_"), OAR)


def template_for(category: str) -> dict:
    """The template of an indication category (KeyError for an unknown one)."""
    return templates()[category]
