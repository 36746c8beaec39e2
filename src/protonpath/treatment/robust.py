"""Robust settings of a plan (what the physicist chooses) and what the plan page shows of its
robustness evaluation.

A plan's ``robust`` field holds ``{"scenarios": "nominal" | "combined", "setup_mm",
"range_pct", "robustness"}``: nominal only (no scenario, no evaluation) or the 21 scenarios of
:func:`protonpath.planning.scenarios.scenario_set` (nominal, +- setup shift along each axis,
+- range error, and their 12 combinations), and the robustness of the objectives (one of
:data:`protonpath.planning.robust.ROBUSTNESS`); an objective of the setup may carry its own
``robustness``. With scenarios, the worker evaluates the calculated plan under them, whether it
was optimised robustly or not.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.utils.formats import number_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from protonpath.planning.robust import (
    COMPOSITE_WORST_CASE,
    NOMINAL,
    ROBUSTNESS,
    STOCHASTIC,
    VOXEL_WORST_CASE,
)
from protonpath.planning.scenarios import COMBINED, NOMINAL_ONLY, ScenarioSet, scenario_set
from protonpath.treatment.catalog import goal_met
from protonpath.treatment.messages import plan_error_message

SCENARIO_CHOICES = (
    (NOMINAL_ONLY, _("Nominal only (no scenario)")),
    (COMBINED, _("21 scenarios: setup shifts and range errors")),
)
MODE_CHOICES = (
    (NOMINAL, _("Nominal")),
    (STOCHASTIC, _("Stochastic (expected value over scenarios)")),
    (VOXEL_WORST_CASE, _("Voxel-wise worst case")),
    (COMPOSITE_WORST_CASE, _("Composite worst case (minimax)")),
)
DEFAULT_SETUP_MM = 3.0
DEFAULT_RANGE_PCT = 3.5
MAX_SETUP_MM = 10.0
MAX_RANGE_PCT = 10.0
NOMINAL_PLAN = {"scenarios": NOMINAL_ONLY, "setup_mm": 0.0, "range_pct": 0.0, "robustness": NOMINAL}


def _refuse(code: str) -> ValidationError:
    return ValidationError(plan_error_message(code, {}), code=code)


def _number(value, code: str) -> float:
    try:
        v = float(str(value).strip().replace(",", "."))
    except (TypeError, ValueError):
        raise _refuse(code) from None
    if v != v:  # NaN
        raise _refuse(code)
    return v


def clean(data) -> dict:
    """The robust settings of a form or a stored record, checked; ``ValidationError`` (with a
    code of messages.ERRORS) otherwise. Empty data is a nominal plan."""
    if not data:
        return dict(NOMINAL_PLAN)
    scenarios = str(data.get("scenarios") or NOMINAL_ONLY)
    if scenarios not in dict(SCENARIO_CHOICES):
        raise _refuse("robust_scenarios")
    mode = str(data.get("robustness") or NOMINAL)
    if mode not in ROBUSTNESS:
        raise _refuse("robust_mode")
    if scenarios == NOMINAL_ONLY:
        if mode != NOMINAL:
            raise _refuse("robust_needs_scenarios")
        return dict(NOMINAL_PLAN)
    setup_mm = _number(data.get("setup_mm", DEFAULT_SETUP_MM), "robust_setup")
    range_pct = _number(data.get("range_pct", DEFAULT_RANGE_PCT), "robust_range")
    if not 0 <= setup_mm <= MAX_SETUP_MM:
        raise _refuse("robust_setup")
    if not 0 <= range_pct <= MAX_RANGE_PCT:
        raise _refuse("robust_range")
    if setup_mm == 0 and range_pct == 0:
        raise _refuse("robust_no_uncertainty")
    return {"scenarios": scenarios, "setup_mm": setup_mm, "range_pct": range_pct, "robustness": mode}


def check_objectives(robust: dict, setup: dict) -> None:
    """Each objective's own robustness is known, and needs scenarios unless nominal."""
    for o in setup.get("objectives", []):
        mode = o.get("robustness")
        if mode in (None, ""):
            continue
        if mode not in ROBUSTNESS:
            raise _refuse("robust_mode")
        if mode != NOMINAL and robust.get("scenarios", NOMINAL_ONLY) == NOMINAL_ONLY:
            raise _refuse("robust_needs_scenarios")


def scenarios_of(robust: dict) -> ScenarioSet | None:
    """The plan's scenario set; ``None`` for a nominal plan."""
    if not robust or robust.get("scenarios", NOMINAL_ONLY) == NOMINAL_ONLY:
        return None
    return scenario_set(
        robust["scenarios"], setup_mm=float(robust["setup_mm"]), range_error=float(robust["range_pct"]) / 100.0
    )


def objective_mode(robust: dict, objective: dict) -> str:
    return objective.get("robustness") or (robust or {}).get("robustness") or NOMINAL


def is_robust_optimisation(robust: dict, setup: dict) -> bool:
    """Whether any objective is scored over the scenarios (else the plan is only evaluated)."""
    if scenarios_of(robust) is None:
        return False
    return any(objective_mode(robust, o) != NOMINAL for o in setup.get("objectives", []))


def mode_label(mode: str) -> str:
    return str(dict(MODE_CHOICES).get(mode, mode))


def _signed(value: float) -> str:
    text = number_format(round(abs(value), 2), decimal_pos=None)
    text = text.rstrip("0").rstrip(",.") if ("," in text or "." in text) else text
    return ("+" if value > 0 else "−") + text


def scenario_label(scenario: dict) -> str:
    """A scenario (ScenarioSet.to_dict's entry) in the reader's language: ``x +3 mm, range
    +3.5 %``, or nominal."""
    parts = [f"{axis} {_signed(v)}\u00a0mm" for axis, v in zip("xyz", scenario["shift_mm"], strict=True) if v]
    if scenario.get("range_error"):
        parts.append(gettext("range %(value)s") % {"value": f"{_signed(100 * scenario['range_error'])}\u00a0%"})
    return ", ".join(parts) if parts else gettext("nominal")


def worst_case_rows(robustness: dict, goals: list[dict]) -> list[dict]:
    """Rows of the worst-case table: targets first (D95, D98, V95), then organs (D2, max,
    mean), each with its nominal value, worst case, scenario and the plan's clinical goal on
    that structure and statistic with whether the worst case meets it."""
    order = ("D95", "D98", "V95", "D2", "max", "mean")
    roles = robustness.get("roles", {})
    by_goal = {(g["structure"], g["metric"]): g for g in goals}
    scenarios = robustness.get("scenarios", {}).get("scenarios", [])
    rows = []
    names = sorted(robustness.get("worst_case", {}), key=lambda n: (roles.get(n) != "target", n))
    for name in names:
        worst = robustness["worst_case"][name]
        for stat in order:
            if stat not in worst:
                continue
            w = worst[stat]
            percent = stat.startswith("V")
            value = 100.0 * w["value"] if percent else w["value"]
            nominal = 100.0 * w["nominal"] if percent else w["nominal"]
            row = {"structure": name, "target": roles.get(name) == "target", "statistic": stat, "value": value,
                   "nominal": nominal, "scenario": scenario_label(scenarios[w["scenario"]]) if w["scenario"] < len(scenarios) else w["scenario_label"], "unit": "%" if percent else "Gy",
                   "goal": None, "passed": None}
            g = by_goal.get((name, stat))
            if g is not None and g.get("limit") is not None:
                limit = float(g["limit"])
                row["goal"] = {"op": g["op"], "limit": limit}
                row["passed"] = goal_met(value, g["op"], limit)
            rows.append(row)
    return rows
