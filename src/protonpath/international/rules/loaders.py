"""Read the data files of :mod:`protonpath.international.data`.

The only module of the package that does I/O. Each loader parses with the pure ``*_from_dict``
function of its rule module, so a database copy of the same data goes through the same checks.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from protonpath.international.rules.quote import (
    DailyCosts,
    Tariff,
    daily_costs_from_dict,
    tariff_from_dict,
)
from protonpath.international.rules.visa import VisaRegimes, visa_regimes_from_dict

DATA_PACKAGE = "protonpath.international.data"
VISA_REGIMES_FILE = "visa_regimes.json"
TARIFF_FILE = "tariff_illustrative.json"
DAILY_COSTS_FILE = "daily_costs_illustrative.json"


def read_data_file(name: str) -> dict[str, Any]:
    """Return the parsed JSON of a data file shipped with the package."""
    text = resources.files(DATA_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    return json.loads(text)


@cache
def load_visa_regimes(name: str = VISA_REGIMES_FILE) -> VisaRegimes:
    """Load the visa lists (Regulation (EU) 2018/1806, Annexes I and II)."""
    return visa_regimes_from_dict(read_data_file(name))


@cache
def load_tariff(name: str = TARIFF_FILE) -> Tariff:
    """Load a tariff file; the default one is illustrative, to seed the editable tariffs."""
    return tariff_from_dict(read_data_file(name))


@cache
def load_daily_costs(name: str = DAILY_COSTS_FILE) -> DailyCosts:
    """Load the daily cost estimates of a stay in Caen (illustrative by default)."""
    return daily_costs_from_dict(read_data_file(name))
