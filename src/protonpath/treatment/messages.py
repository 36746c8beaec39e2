"""Why a plan could not be set up or calculated, and the calculation's stages, in the reader's
language: the worker stores a code and params (English never stored as the only form)."""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from protonpath.localised import coded_message

ERRORS: dict[str, Promise] = {
    "no_ct": _("No CT series was chosen, or it has no slice."),
    "ct_unreadable": _("The CT series cannot be used for planning: %(detail)s"),
    "rtstruct_not_on_ct": _("The structure set does not refer to the chosen CT series."),
    "no_target": _("No structure is mapped as the target."),
    "several_targets": _("Map exactly one structure as the target."),
    "target_empty": _("The target “%(target)s” has no contour."),
    "target_outside_ct": _("The target “%(target)s” lies outside the CT slices."),
    "target_off_dose_grid": _("The target “%(target)s” has no voxel on the dose grid: choose a finer dose grid."),
    "no_beams": _("The plan needs at least one beam."),
    "bad_beam": _("Beam angles are numbers in degrees (gantry 0–360, couch −90–90)."),
    "bad_layer_spacing": _("The energy layer spacing is automatic or a fixed number of mm between %(min)s and %(max)s."),
    "no_spots": _("No spot could be placed: the target is out of the machine's range."),
    "no_prescription": _("The request has no prescription yet: the oncologist prescribes first."),
    "unknown_category": _("Unknown indication category."),
    "robust_scenarios": _("Choose nominal only or the 21 scenarios."),
    "robust_setup": _("The setup shift is a number of mm between 0 and 10."),
    "robust_range": _("The range error is a percentage between 0 and 10."),
    "robust_no_uncertainty": _("The 21 scenarios need a setup shift or a range error above zero."),
    "robust_mode": _("Unknown robust mode."),
    "robust_needs_scenarios": _("A robust mode other than nominal needs the 21 scenarios."),
    "pipeline": _("The calculation stopped: %(detail)s"),
    "worker_lost": _("The worker calculating this plan stopped (restarted or killed). Start the calculation again."),
    "internal": _("The calculation failed unexpectedly; the technical team has the details. Start it again or change the setup."),
}

STAGES: dict[str, Promise] = {
    "": _("Waiting for a worker"),
    "reading images": _("Reading the CT and structures"),
    "ray tracing": _("Ray tracing"),
    "dose matrix": _("Dose calculation"),
    "optimisation": _("Optimisation"),
    "scenario matrices": _("Dose calculation in the scenarios"),
    "robust optimisation": _("Robust optimisation"),
    "robustness evaluation": _("Robustness evaluation"),
    "minimum MU": _("Minimum MU per spot"),
    "LET and RBE": _("LET and variable RBE"),
    "export": _("Writing RT Ion Plan and RT Dose"),
    "done": _("Done"),
}


def plan_error_message(code: str, params: dict | None) -> str:
    if not code:
        return ""
    return coded_message(ERRORS, code, params or {}, str(ERRORS["internal"]))


def stage_label(stage: str) -> str:
    return str(STAGES.get(stage, stage))
