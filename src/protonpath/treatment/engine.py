"""From a plan row's setup to the pipeline's inputs, and from its result to what the plan keeps.

Reads the CT series and RT Structure Set from the imaging index's files, runs
:func:`protonpath.planning.pipeline.plan_pbs` (the same pipeline as ``protonpath plan``), and
returns the RT Ion Plan and RT Dose datasets, the dose cube, course statistics, DVH curves, the
clinical goals evaluated and the delivery estimate. No database writes here (services.py does
them); errors are :class:`PlanError` with a code that pages translate.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np
import pydicom

from protonpath.planning import (
    deliverability,
    deliverable,
    dicom_export,
    dicom_io,
    proteus_one,
    resources,
    robust_export,
)
from protonpath.planning.ct import Grid, hu_to_spr
from protonpath.planning.delivery_time import fraction_delivery_time
from protonpath.planning.dvh import Dvh
from protonpath.planning.let_rbe import CONSTANT_RBE
from protonpath.planning.optimise import Objective
from protonpath.planning.pipeline import LATERAL_MODELS, PlanSettings, plan_pbs, target_centre_mm
from protonpath.planning.raytrace import Beam
from protonpath.planning.robust import NOMINAL, RobustObjective
from protonpath.planning.robust_plan import (
    RobustSettings,
    halo_corrected,
    halo_row_scale,
    plan_robust,
)
from protonpath.planning.robustness import evaluate_robustness, scenario_dose_cubes
from protonpath.planning.spots import AUTO, layer_spacing_record, parse_layer_spacing
from protonpath.planning.structures import EXTERNAL, OAR, TARGET, Structure, rasterise_contours
from protonpath.treatment import catalog, robust, session

STATISTICS = ("D98", "D95", "D50", "D2", "mean", "max", "min")


class PlanError(Exception):
    """A plan cannot be calculated: ``code`` and ``params`` say why (messages.py renders them)."""

    def __init__(self, code: str, **params):
        super().__init__(code)
        self.code = code
        self.params = params


@dataclass
class Images:
    ct: object
    slices: list
    rtstruct: pydicom.Dataset
    context: dicom_export.StudyContext


def read_images(ct_instances, rtstruct_instance) -> Images:
    """CT (from the index's instances of one series) and the structure set's dataset."""
    slices = []
    for instance in ct_instances:
        with instance.file.open("rb") as f:
            slices.append(pydicom.dcmread(io.BytesIO(f.read())))
    if not slices:
        raise PlanError("no_ct")
    try:
        ct = dicom_io.ct_from_slices(sorted(slices, key=lambda s: float(s.ImagePositionPatient[2])))
    except (ValueError, AttributeError) as exc:
        raise PlanError("ct_unreadable", detail=str(exc)) from None
    with rtstruct_instance.file.open("rb") as f:
        rs = pydicom.dcmread(io.BytesIO(f.read()))
    first = slices[0]
    ctx = dicom_export.StudyContext(
        patient_id=str(getattr(first, "PatientID", "ANON")),
        patient_name=str(getattr(first, "PatientName", "ANONYMOUS")),
        study_instance_uid=str(first.StudyInstanceUID),
        frame_of_reference_uid=str(getattr(first, "FrameOfReferenceUID", "")) or dicom_export.StudyContext().frame_of_reference_uid,
        study_id=str(getattr(first, "StudyID", "1") or "1"),
        patient_position=str(getattr(first, "PatientPosition", "HFS") or "HFS"),
    )
    return Images(ct, slices, rs, ctx)


def roi_contours(rs: pydicom.Dataset) -> dict[str, list[np.ndarray]]:
    """ROI name -> its closed planar contours (n, 3) in mm."""
    names = {int(r.ROINumber): str(r.ROIName) for r in getattr(rs, "StructureSetROISequence", [])}
    out: dict[str, list[np.ndarray]] = {name: [] for name in names.values()}
    for rc in getattr(rs, "ROIContourSequence", []):
        name = names.get(int(rc.ReferencedROINumber))
        if name is None:
            continue
        for c in getattr(rc, "ContourSequence", []):
            if str(getattr(c, "ContourGeometricType", "")) != "CLOSED_PLANAR":
                continue
            out[name].append(np.asarray(c.ContourData, dtype=float).reshape(-1, 3))
    return out


def roi_types(rs: pydicom.Dataset) -> dict[str, str]:
    names = {int(r.ROINumber): str(r.ROIName) for r in getattr(rs, "StructureSetROISequence", [])}
    return {
        names.get(int(o.ReferencedROINumber), ""): str(getattr(o, "RTROIInterpretedType", ""))
        for o in getattr(rs, "RTROIObservationsSequence", [])
    }


def contour_centre_mm(contours: list[np.ndarray]) -> list[float] | None:
    """Mean of a structure's contour points: the default isocentre, without reading the CT."""
    if not contours:
        return None
    points = np.concatenate(contours)
    return [round(float(v), 1) for v in points.mean(axis=0)]


def check_target(contours: list[np.ndarray], slice_z_mm: list[float], target: str) -> None:
    """Refuse a target without contours or with contours outside the CT's slices."""
    if not contours:
        raise PlanError("target_empty", target=target)
    if not slice_z_mm:
        raise PlanError("no_ct")
    z = np.asarray(sorted(slice_z_mm))
    half = (float(np.median(np.diff(z))) / 2) if len(z) > 1 else 1.5
    inside = [c for c in contours if z[0] - half - 1e-3 <= c[0, 2] <= z[-1] + half + 1e-3]
    if not inside:
        raise PlanError("target_outside_ct", target=target)


def _dose(entry: dict, prescription_gy: float) -> float:
    if "dose_pct" in entry and entry["dose_pct"] is not None:
        return float(entry["dose_pct"]) / 100.0 * prescription_gy
    return float(entry.get("dose_gy", 0.0))


def build_structures(images: Images, mapping: list[dict]) -> list[Structure]:
    """The mapped structures rasterised on the CT grid (ignored ones left out)."""
    contours = roi_contours(images.rtstruct)
    out = []
    for m in mapping:
        role = m.get("role")
        if role not in (TARGET, OAR, EXTERNAL):
            continue
        mask = rasterise_contours(contours.get(m["name"], []), images.ct.grid)
        out.append(Structure(m["name"], mask, role))
    return out


def evaluate_goals(goals: list[dict], statistics: dict, prescription_gy: float) -> list[dict]:
    """Each goal with its value and whether it passes (None when the structure has no voxel)."""
    out = []
    for g in goals:
        st = statistics.get(g["structure"], {})
        metric = g["metric"]
        row = dict(g)
        if metric == "V95":
            value = st.get("V95")
            value = None if value is None else 100.0 * value
            limit = float(g.get("volume_pct", 95))
            row["unit"] = "%"
        else:
            value = st.get(metric)
            limit = _dose(g, prescription_gy)
            row["unit"] = "Gy"
        row["limit"] = limit
        row["value"] = value
        if value is None:
            row["passed"] = None
        else:
            row["passed"] = catalog.goal_met(value, g["op"], limit)
        out.append(row)
    return out


@dataclass
class Outcome:
    plan_ds: pydicom.Dataset
    dose_ds: pydicom.Dataset
    dose_gy: np.ndarray  # course dose on the dose grid
    dose_grid: Grid
    results: dict
    robustness: dict  # empty for a plan without scenarios


def evaluate_under_scenarios(ct, calibration, plan, weights, machine, scenarios, cut_level, prescription_gy,
                             progress=None, lateral_model: str = "single"):
    """Robustness evaluation of a plan's weights on its targets and organs
    (:func:`protonpath.planning.robustness.scenario_dose_cubes`, with progress and cancellation).

    The scenarios are computed with the core Gaussian; with a halo ``lateral_model`` (that of
    ``plan.dose_gy``, the dose of ``weights``) they are corrected voxel by voxel as in robust
    plans (:func:`protonpath.planning.robust_plan.halo_row_scale`) and the nominal scenario is the
    plan's own dose."""
    mask = np.zeros(plan.dose_grid.shape, dtype=bool)
    for st in plan.structures:
        if st.role != EXTERNAL:
            mask |= st.mask
    cubes = scenario_dose_cubes(hu_to_spr(ct.hu, calibration), ct.grid, plan.dose_grid, mask, plan.beams,
                                plan.spots, weights, machine, scenarios, cut_level, progress)
    if lateral_model != "single":
        scale = halo_row_scale(cubes[0].ravel(), plan.dose_gy.ravel()).reshape(plan.dose_gy.shape)
        cubes = halo_corrected(cubes, scenarios, scale, plan.dose_gy)
    return evaluate_robustness(cubes, plan.structures, scenarios, prescription_gy)


def rbe_record(evaluation: dict, structures: list[str], fractions: int) -> dict:
    """What the plan keeps of :func:`protonpath.planning.deliverable.evaluate_let_rbe`: per
    target and organ, LET_d (keV/µm, mean and maximum where there is dose) and the whole-course
    D95, D2 and mean in Gy(RBE) under each RBE model (constant 1.1, McNamara, Wedenberg)."""
    out = {"models": list(evaluation["statistics"]), "structures": {}}
    for name in structures:
        let = evaluation["let_statistics"].get(name)
        if let is None:
            continue
        row = {"let_mean": round(let["mean"], 2), "let_max": round(let["max"], 2)}
        for model, stats in evaluation["statistics"].items():
            st = stats.get(name, {})
            row[model] = {k: round(float(st[k]) * fractions, 3) for k in ("D95", "D2", "mean") if k in st}
        out["structures"][name] = row
    return out


def robustness_record(evaluation, to_course: float, nominal_plan_evaluation=None) -> dict:
    """What the plan keeps of an evaluation: whole-course doses (per-fraction physical doses times
    ``to_course``: fractions x RBE), DVH bands thinned to at most
    100 bins, each structure's role."""
    out = evaluation.to_dict(scale=to_course)
    for band in out["dvh_bands"]:
        step = max(1, len(band["dose_gy"]) // 100)
        for key in ("dose_gy", "nominal", "lower", "upper"):
            band[key] = band[key][::step]
    out["roles"] = dict(evaluation.roles)
    if nominal_plan_evaluation is not None:
        out["nominal_plan_worst_case"] = nominal_plan_evaluation.to_dict(scale=to_course)["worst_case"]
    return out


def calculate(images: Images, setup: dict, *, dose_gy: float, fractions: int, category: str, progress=None,
              robust_settings: dict | None = None) -> Outcome:
    """Run the pipeline on a plan's setup (doses of the setup are for the whole course).

    With scenarios in ``robust_settings`` (treatment/robust.py), objectives are optimised with
    their robustness (:func:`protonpath.planning.robust_plan.plan_robust`) when any is not
    nominal, and the plan is evaluated under the scenarios in any case."""
    robust_settings = robust_settings or {}
    scenarios = robust.scenarios_of(robust_settings)
    mapping = setup.get("structures", [])
    target = setup.get("target")
    structures = build_structures(images, mapping)
    by_name = {s.name: s for s in structures}
    if target not in by_name:
        raise PlanError("no_target")
    if not by_name[target].mask.any():
        raise PlanError("target_empty", target=target)
    # the prescription, objectives and goals are in Gy(RBE) with the constant RBE of 1.1: the
    # physical dose per fraction is optimised, everything shown and exported is Gy(RBE)
    to_course = fractions * CONSTANT_RBE
    per_fraction = dose_gy / to_course
    objectives = []
    for o in setup.get("objectives", []):
        if o["structure"] not in by_name:
            continue
        objective = Objective(o["structure"], o["kind"], _dose(o, dose_gy) / to_course, float(o.get("weight", 1.0)))
        objectives.append(RobustObjective(objective, robust.objective_mode(robust_settings, o) if scenarios else NOMINAL))
    iso_default = target_centre_mm(by_name[target], images.ct.grid)
    beams = []
    for b in setup.get("beams", []):
        iso = b.get("isocentre_mm") or iso_default
        beams.append(Beam(float(b["gantry_deg"]), float(b.get("couch_deg", 0.0)), np.asarray(iso, dtype=float)))
    if not beams:
        raise PlanError("no_beams")
    s = setup.get("settings", {})
    lateral_model = str(s.get("lateral_model") or catalog.DEFAULT_LATERAL_MODEL)
    if lateral_model not in LATERAL_MODELS:
        raise PlanError("pipeline", detail=f"unknown lateral model {lateral_model!r}")
    # energy layers spaced by the Bragg peak's width unless the setup fixes a spacing in mm
    try:
        layer_spacing = parse_layer_spacing(s.get("layer_spacing_mm", AUTO))
    except ValueError as exc:
        raise PlanError("pipeline", detail=str(exc)) from None
    settings = PlanSettings(
        dose_grid_mm=float(s.get("dose_grid_mm", 4.0)),
        spot_spacing_mm=float(s.get("spot_spacing_mm", 6.0)),
        layer_spacing_mm=layer_spacing,
        max_iterations=int(s.get("max_iterations", 150)),
        lateral_model=lateral_model,
    )
    calibration = resources.load_default_calibration()
    # the department's gantry: the Proteus One's machine data, through its range shifter when
    # the target is shallower than the lowest energy's Bragg peak
    machine, shifter = deliverable.choose_range_shifter(
        images.ct, calibration, beams, proteus_one.build_proteus_one_machine(), by_name[target]
    )
    optimise_robustly = scenarios is not None and any(ro.robustness != NOMINAL for ro in objectives)
    evaluation = nominal_plan_evaluation = None
    try:
        if optimise_robustly:
            robust_result = plan_robust(
                images.ct, structures, beams, machine, calibration, objectives, target=target,
                prescription_gy=per_fraction, scenarios=scenarios, settings=settings, progress=progress,
                robust_settings=RobustSettings(max_iterations=settings.max_iterations),
                spot_limits=deliverability.minimum_weights_from_mu,
            )
            nominal = robust_result.nominal
            result = replace(
                nominal, weights=robust_result.weights, dose_gy=robust_result.dose_gy,
                statistics=robust_result.statistics, dvhs=robust_result.dvhs,
                timings_s={**robust_result.timings_s},
            )
            iterations, objective_value = robust_result.optimisation.iterations, robust_result.optimisation.objective
            evaluation, nominal_plan_evaluation = robust_result.evaluation, robust_result.nominal_evaluation
            minimum_mu = robust_result.deliverability
        else:
            nominal_objectives = [ro.objective for ro in objectives]
            result = plan_pbs(
                images.ct, structures, beams, machine, calibration, nominal_objectives,
                target=target, prescription_gy=per_fraction, settings=settings, progress=progress,
            )
            iterations, objective_value = result.optimisation.iterations, result.optimisation.objective
            if progress is not None:
                progress("minimum MU", 0, 1)
            made = deliverable.make_deliverable(result, nominal_objectives, per_fraction,
                                                max_iterations=settings.max_iterations)
            result, minimum_mu = made.plan, made.deliverability
            if progress is not None:
                progress("minimum MU", 1, 1)
            objective_value = minimum_mu.objective_after
            if scenarios is not None:
                evaluation = evaluate_under_scenarios(
                    images.ct, calibration, result, result.weights, machine, scenarios, settings.cut_level,
                    per_fraction, progress, lateral_model,
                )
    except ValueError as exc:
        if "no voxel" in str(exc):
            raise PlanError("target_off_dose_grid", target=target) from None
        raise PlanError("pipeline", detail=str(exc)) from None
    if len(result.spots) == 0:
        raise PlanError("no_spots")
    if progress is not None:
        progress("LET and RBE", 0, 1)
    variable_rbe = rbe_record(
        deliverable.evaluate_let_rbe(result, images.ct, calibration, machine, prescription_gy=per_fraction),
        [st.name for st in result.structures if st.role != EXTERNAL], fractions,
    )
    if progress is not None:
        progress("LET and RBE", 1, 1)
    course = result.dose_gy * to_course
    sigma = machine.spot_sigma_in_air_mm(result.spots.energy_index, np.full(len(result.spots), machine.sad_mm))
    plan_ds = dicom_export.rt_ion_plan_dataset(
        beams, result.spots, result.weights, machine, images.context,
        n_fractions=fractions, prescription_gy=dose_gy, structure_set=images.rtstruct, spot_sigma_mm=sigma,
        range_shifter=shifter,
    )
    robustness = {}
    if evaluation is not None:
        robustness = robustness_record(evaluation, to_course, nominal_plan_evaluation)
        robustness["optimised_robustly"] = optimise_robustly
        robust_export.write_robust_settings(plan_ds, scenarios, {
            "objectives": [{"structure": ro.objective.structure, "kind": ro.objective.kind,
                            "dose_gy": ro.objective.dose_gy, "weight": ro.objective.weight,
                            "robustness": ro.robustness} for ro in objectives],
            "settings": robust_settings,
            "worst_case": robustness["worst_case"],
        })
    dose_ds = dicom_export.rt_dose_dataset(course, result.dose_grid, images.context, plan=plan_ds,
                                           dose_type="EFFECTIVE", comment="Gy(RBE), constant RBE 1.1")
    statistics = {}
    for st in result.structures:
        values = dict(result.statistics[st.name])
        for key in STATISTICS:
            if key in values:
                values[key] = values[key] * to_course
        statistics[st.name] = values
    dvhs = []
    for d in result.dvhs:
        course_dvh = Dvh(d.name, d.dose_gy * to_course, d.volume_fraction)
        step = max(1, len(course_dvh.dose_gy) // 200)
        dvhs.append({
            "name": d.name,
            "dose_gy": [round(float(v), 3) for v in course_dvh.dose_gy[::step]],
            "volume": [round(float(v), 4) for v in course_dvh.volume_fraction[::step]],
        })
    goals = evaluate_goals(setup.get("goals", []), statistics, dose_gy)
    delivery = fraction_delivery_time(result.spots, result.weights, n_beams=len(beams))
    fields = []
    for b, timing in enumerate(delivery.fields):
        fields.append({
            "gantry_deg": beams[b].gantry_deg,
            "couch_deg": beams[b].couch_deg,
            "spots": timing.spots,
            "layers": timing.energy_layers,
            "beam_on_s": round(timing.beam_on_s, 1),
            "layer_switching_s": round(timing.layer_switching_s, 1),
            "scanning_s": round(timing.scanning_s + timing.burst_switching_s, 1),
            "delivery_s": round(timing.total_s, 1),
        })
    d = catalog.delivery()
    setup_min = float(setup.get("setup_minutes") or catalog.template_for(category)["setup_minutes"])
    minutes = session.session_minutes(
        [f.total_s for f in delivery.fields], setup_minutes=setup_min,
        field_overhead_s=d["field_overhead_s"], round_to_min=d["round_to_min"],
    )
    results = {
        "statistics": statistics,
        "dvhs": dvhs,
        "goals": goals,
        "fields": fields,
        "session_minutes": minutes,
        "delivery_s": round(delivery.total_s - delivery.field_setup_s, 1),
        "setup_minutes": setup_min,
        "spots": int(len(result.spots)),
        "isocentre_mm": [round(float(v), 1) for v in beams[0].isocentre_mm],
        "optimiser": {"iterations": int(iterations), "objective": float(objective_value)},
        "machine": machine.name,
        "lateral_model": lateral_model,
        "layer_spacing": layer_spacing_record(
            result.spots, machine, settings.layer_spacing_mm, settings.layer_spacing_factor,
            settings.min_layer_spacing_mm, settings.max_layer_spacing_mm,
        ),
        "range_shifter": None if shifter is None else {
            "id": shifter.id, "water_equivalent_mm": float(shifter.water_equivalent_thickness_mm),
        },
        "variable_rbe": variable_rbe,
        "minimum_mu": None if minimum_mu is None else {
            **minimum_mu.as_dict(), "min_mu_per_spot": float(proteus_one.load_proteus_one().min_mu_per_spot),
        },
        "timings_s": {k: round(float(v), 2) for k, v in result.timings_s.items()},
        "prescription_gy": dose_gy,
        "fractions": fractions,
    }
    return Outcome(plan_ds, dose_ds, course, result.dose_grid, results, robustness)


def dataset_bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
