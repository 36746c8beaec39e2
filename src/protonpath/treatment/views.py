"""Pages of planning: prescription, plan setup, progress, results (dose over CT, DVH, statistics,
goals), approval, zip. Thin: selectors decide who sees what (404 otherwise, audited), services
and approval do the work."""

from __future__ import annotations

import io

import pydicom
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from protonpath.imaging.models import Instance, Series
from protonpath.imaging.selectors import slices_of, structure_sets_for
from protonpath.planning.spots import AUTO, FIXED_LAYER_SPACING_RANGE_MM, parse_layer_spacing
from protonpath.referrals.selectors import get_request_for
from protonpath.scheduling.models import IndicationCategory
from protonpath.treatment import approval, catalog, robust, selectors, services
from protonpath.treatment import render as rendering
from protonpath.treatment.models import EDITABLE_STATES, PlanState

#: the pencil-beam's lateral dose models (planning.pipeline.LATERAL_MODELS), the department's first
LATERAL_MODELS = (
    ("halo-depth", gettext_lazy("Core and nuclear halo, the halo growing with depth (checked against Monte Carlo)")),
    ("halo", gettext_lazy("Core and halo, the halo constant along depth")),
    ("single", gettext_lazy("Core Gaussian only (faster, higher in the target)")),
)
ROLES = (("target", gettext_lazy("Target")), ("oar", gettext_lazy("Organ at risk")),
         ("external", gettext_lazy("External")), ("ignore", gettext_lazy("Not used")))


def _staff_request(request, pk):
    r = get_request_for(request.user, pk, audit_view=False)
    if not selectors.may_see_plans(request.user):
        services._deny(request.user, r, "plans")
        raise Http404(_("No such request."))
    return r


def _errors(exc: ValidationError | PermissionDenied) -> str:
    if isinstance(exc, PermissionDenied):
        return str(exc) or _("You may not do this.")
    return " ".join(exc.messages)


@login_required
def prescription(request, pk: int):
    r = _staff_request(request, pk)
    if request.method == "POST":
        try:
            services.prescribe(actor=request.user, treatment_request=r, target=request.POST.get("target", ""),
                               dose_gy=request.POST.get("dose_gy", ""), fractions=int(request.POST.get("fractions") or 0),
                               note=request.POST.get("note", ""))
            messages.success(request, _("Prescription saved as a new version."))
            return redirect("referrals:detail", r.pk)
        except (ValidationError, PermissionDenied, ValueError) as exc:
            messages.error(request, _errors(exc) if not isinstance(exc, ValueError) else _("The course needs 1 to 60 fractions."))
    current = services.current_prescription(r)
    initial = current or services.prescription_from_decision(r)
    return render(request, "treatment/prescription.html", {
        "r": r, "current": current, "initial": initial, "versions": list(r.prescriptions.all()),
        "can_prescribe": request.user.role in services.PRESCRIBERS,
    })


@login_required
def new_plan(request, pk: int):
    r = _staff_request(request, pk)
    series = list(services.ct_series_of(r))
    choices = [(s, structure_sets_for(s)) for s in series]
    # the series with a structure set come first (newest first): the first is the one chosen
    choices.sort(key=lambda c: (not c[1], -c[0].pk))
    if request.method == "POST":
        try:
            ct = Series.objects.filter(pk=request.POST.get("ct_series") or 0, study__treatment_request=r).first()
            rs = Instance.objects.filter(pk=request.POST.get("rtstruct") or 0, series__study__treatment_request=r).first()
            category = request.POST.get("category", "")
            if not services.may_plan(request.user, r):
                raise services._deny(request.user, r, "create plan")
            services.validate_images(r, ct, rs)
            robust_settings = services.validate_robust(_robust_from_post(request.POST), {})
            setup = services.initial_setup(r, ct, rs, category) if category in catalog.templates() else {}
            plan = services.create_plan(actor=request.user, treatment_request=r, ct_series=ct, rtstruct=rs,
                                        category=category, setup=setup, robust_settings=robust_settings)
            return redirect("treatment:plan", plan.pk)
        except (ValidationError, PermissionDenied) as exc:
            messages.error(request, _errors(exc))
    course = getattr(r, "course", None) if hasattr(r, "course") else None
    return render(request, "treatment/new_plan.html", {
        "r": r, "choices": choices, "categories": IndicationCategory.choices,
        "category": course.category if course else "adult_standard",
        "prescription": services.current_prescription(r),
        "robust": _robust_from_post(request.POST) if request.method == "POST" else robust.NOMINAL_PLAN,
        **_robust_choices(),
    })


def _robust_choices() -> dict:
    return {"scenario_choices": robust.SCENARIO_CHOICES, "mode_choices": robust.MODE_CHOICES,
            "default_setup_mm": robust.DEFAULT_SETUP_MM, "default_range_pct": robust.DEFAULT_RANGE_PCT}


def _robust_from_post(post) -> dict:
    """The robust fields of a form as posted (robust.clean checks them)."""
    return {"scenarios": post.get("scenarios", "nominal"), "setup_mm": post.get("setup_mm", robust.DEFAULT_SETUP_MM),
            "range_pct": post.get("range_pct", robust.DEFAULT_RANGE_PCT),
            "robustness": post.get("robustness", "nominal")}


def _float(value, default=None):
    try:
        return float(str(value).replace(",", "."))
    except (TypeError, ValueError):
        return default


def _layer_spacing_from_post(post):
    """The setup's ``layer_spacing_mm``: ``"auto"`` (the choice *automatic*) or the fixed mm
    typed; what cannot be read stays as typed, for services.validate_setup to refuse with its
    message while the page shows it again.  Without the choice (a client posting only the field),
    the field is ``auto`` or a number."""
    if post.get("layer_spacing_mode") == AUTO:
        return AUTO
    raw = str(post.get("layer_spacing_mm", "")).strip()
    try:
        return parse_layer_spacing(raw)
    except ValueError:
        return raw


def _setup_from_post(plan, post) -> dict:
    setup = {k: v for k, v in plan.setup.items()}
    structures = []
    for i, m in enumerate(plan.setup.get("structures", [])):
        role = post.get(f"role-{i}", m["role"])
        structures.append({**m, "role": role if role in dict(ROLES) else m["role"]})
    setup["structures"] = structures
    targets = [m["name"] for m in structures if m["role"] == "target"]
    setup["target"] = targets[0] if len(targets) == 1 else ""
    beams = []
    for i in range(int(post.get("beam-count", 0) or 0) + 1):
        g = post.get(f"beam-{i}-gantry", "").strip()
        if g == "":
            continue
        iso = [_float(post.get(f"beam-{i}-iso-{a}")) for a in "xyz"]
        beams.append({"gantry_deg": _float(g, g), "couch_deg": _float(post.get(f"beam-{i}-couch", 0), 0.0),
                      "isocentre_mm": iso if None not in iso else None})
    setup["beams"] = beams
    for kind in ("objectives", "goals"):
        rows = []
        for i, row in enumerate(plan.setup.get(kind, [])):
            if post.get(f"{kind}-{i}-drop"):
                continue
            row = dict(row)
            value = _float(post.get(f"{kind}-{i}-value"))
            key = "volume_pct" if "volume_pct" in row else "dose_pct" if "dose_pct" in row else "dose_gy"
            if value is not None:
                row[key] = value
            if kind == "objectives":
                row["weight"] = _float(post.get(f"{kind}-{i}-weight"), row.get("weight", 1.0))
                mode = post.get(f"{kind}-{i}-robustness", row.get("robustness") or "")
                if mode:
                    row["robustness"] = mode  # robust.check_objectives refuses an unknown one
                else:
                    row.pop("robustness", None)
            rows.append(row)
        setup[kind] = rows
    s = dict(setup.get("settings", {}))
    for key in ("dose_grid_mm", "spot_spacing_mm"):
        v = _float(post.get(key))
        if v is not None and 1.0 <= v <= 20.0:
            s[key] = v
    if "layer_spacing_mode" in post or "layer_spacing_mm" in post:
        s["layer_spacing_mm"] = _layer_spacing_from_post(post)
    if post.get("lateral_model") in dict(LATERAL_MODELS):
        s["lateral_model"] = post["lateral_model"]
    it = _float(post.get("max_iterations"))
    if it is not None and 1 <= it <= 2000:
        s["max_iterations"] = int(it)
    setup["settings"] = s
    return setup


@login_required
def plan_page(request, pk: int):
    plan = selectors.get_plan_for(request.user, pk)
    r = plan.treatment_request
    posted = None  # a setup that could not be saved, shown again as typed
    if request.method == "POST":
        action = request.POST.get("action", "")
        setup = robust_settings = None
        try:
            if action in ("save", "save_and_calculate"):
                setup = _setup_from_post(plan, request.POST)
                robust_settings = _robust_from_post(request.POST) if "scenarios" in request.POST else None
                plan = services.new_version(actor=request.user, plan=plan, setup=setup,
                                            robust_settings=robust_settings)
                setup = None  # saved
                if action == "save_and_calculate":
                    plan = services.start_calculation(actor=request.user, plan=plan)
                messages.success(request, _("Setup saved (plan version %(v)s).") % {"v": plan.version})
            elif action == "calculate":
                services.start_calculation(actor=request.user, plan=plan)
            elif action == "cancel":
                services.cancel_calculation(actor=request.user, plan=plan)
            elif action == "approve":
                plan = approval.approve(actor=request.user, plan=plan)
                messages.success(request, _("Plan approved."))
            return redirect("treatment:plan", plan.pk)
        except (ValidationError, PermissionDenied) as exc:
            messages.error(request, _errors(exc))
            if not (isinstance(exc, ValidationError) and setup is not None):
                return redirect("treatment:plan", plan.pk)
            posted = (setup, robust_settings)
    slices = slices_of(plan.ct_series)
    names = [m["name"] for m in plan.setup.get("structures", []) if m["role"] != "ignore"]
    colours = rendering.structure_colours(names)
    stats_rows = []
    for name in names:
        st = plan.results.get("statistics", {}).get(name)
        if st is not None:
            stats_rows.append({"name": name, "colour": colours[name], "stats": st})
    dvh = ""
    if plan.results.get("dvhs"):
        dvh = rendering.dvh_svg(
            [d for d in plan.results["dvhs"] if d["name"] in colours], colours, float(plan.prescription.dose_gy),
            x_label=_("Dose (Gy RBE)"), y_label=_("Volume (%)"), title=_("Cumulative dose-volume histogram"),
            number=lambda v: number_format(v, 0),
        )
    band_chart, worst_rows = "", []
    if plan.robustness.get("dvh_bands"):
        band_chart = rendering.dvh_band_svg(
            [b for b in plan.robustness["dvh_bands"] if b["name"] in colours], colours,
            float(plan.prescription.dose_gy), x_label=_("Dose (Gy RBE)"), y_label=_("Volume (%)"),
            title=_("DVH bands over the scenarios (nominal curve, minimum to maximum)"),
            number=lambda v: number_format(v, 0),
        )
        worst_rows = robust.worst_case_rows(plan.robustness, plan.results.get("goals", []))
        for row in worst_rows:
            row["colour"] = colours.get(row["structure"], "#000")
    centre = 0
    iso = (plan.setup.get("beams") or [{}])[0].get("isocentre_mm") or plan.results.get("isocentre_mm")
    if slices and iso:
        centre = min(range(len(slices)), key=lambda k: abs((slices[k].slice_position_mm or 0) - iso[2]))
    robust_shown = plan.robust or robust.NOMINAL_PLAN
    if posted is not None:
        # the refused setup on the form as typed (never saved), so that nothing is lost
        plan.setup = posted[0]
        robust_shown = posted[1] or robust_shown
    spacing = plan.setup.get("settings", {}).get("layer_spacing_mm", AUTO)
    return render(request, "treatment/plan.html", {
        "layer_spacing_auto": spacing == AUTO,
        "layer_spacing_fixed_mm": "" if spacing == AUTO else spacing,
        "layer_spacing_range": FIXED_LAYER_SPACING_RANGE_MM,
        "r": r, "plan": plan, "slices": slices, "centre": centre, "colours": colours, "stats_rows": stats_rows,
        "dvh": dvh, "roles": ROLES, "band_chart": band_chart, "worst_rows": worst_rows,
        "n_scenarios": len(plan.robustness.get("scenarios", {}).get("scenarios", [])),
        "robust_mode_label": robust.mode_label(plan.robust.get("robustness", "nominal")),
        "robust": robust_shown,
        "lateral_models": LATERAL_MODELS,
        "lateral_model": plan.setup.get("settings", {}).get("lateral_model") or catalog.DEFAULT_LATERAL_MODEL,
        "rbe_rows": [{"name": k, **v} for k, v in plan.results.get("variable_rbe", {}).get("structures", {}).items()],
        "result_lateral_model": dict(LATERAL_MODELS).get(plan.results.get("lateral_model"), ""),
        **_robust_choices(),
        "editable": request.user.role in services.PLANNERS and plan.state in EDITABLE_STATES | {PlanState.CALCULATED},
        "is_planner": request.user.role in services.PLANNERS,
        "may_approve": approval.may_approve(request.user, plan),
        "versions": list(r.plans.all()),
        "category_label": dict(IndicationCategory.choices).get(plan.category, plan.category),
    })


@login_required
@require_GET
def plan_progress(request, pk: int):
    plan = selectors.get_plan_for(request.user, pk, audit_view=False)
    response = render(request, "treatment/_progress.html", {"plan": plan, "is_planner": request.user.role in services.PLANNERS})
    if not plan.is_active and request.htmx:
        response["HX-Refresh"] = "true"  # the page shows the results (or the error) in full
    return response


@login_required
@require_GET
def plan_slice(request, pk: int, index: int):
    plan = selectors.get_plan_for(request.user, pk, audit_view=False)
    if not plan.dose_file:
        raise Http404(_("No dose yet."))
    slices = slices_of(plan.ct_series)
    if not 0 <= index < len(slices):
        raise Http404(_("No such slice."))
    with slices[index].file.open("rb") as f:
        ds = pydicom.dcmread(io.BytesIO(f.read()))
    names = [m["name"] for m in plan.setup.get("structures", []) if m["role"] != "ignore"]
    contours = {k: v for k, v in rendering.read_rtstruct(plan).items() if k in names}
    png = rendering.overlay_png(plan, ds, contours, rendering.structure_colours(names))
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=300"
    return response


@login_required
@require_POST
def plan_zip(request, pk: int):
    plan = selectors.get_plan_for(request.user, pk, audit_view=False)
    try:
        data, name = approval.plan_zip(actor=request.user, plan=plan)
    except PermissionDenied:
        raise Http404(_("No such plan.")) from None
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
