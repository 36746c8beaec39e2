"""Writes of the treatment app: prescriptions, plan setup, calculation on a task worker, approval,
export. Every function takes the acting user, checks the role, and records what it did (or the
refusal) in the audit trail; nothing personal goes into logs.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import threading
import time
from datetime import timedelta
from decimal import Decimal, InvalidOperation

import numpy as np
import pydicom
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent, Role
from protonpath.imaging.models import Instance, Series
from protonpath.imaging.selectors import slices_of, structure_sets_for
from protonpath.planning.spots import FIXED_LAYER_SPACING_RANGE_MM, parse_layer_spacing
from protonpath.referrals.models import State, TreatmentRequest
from protonpath.treatment import catalog, engine, robust
from protonpath.treatment.messages import plan_error_message
from protonpath.treatment.models import (
    EDITABLE_STATES,
    STARTABLE_STATES,
    Plan,
    PlanState,
    Prescription,
)

logger = logging.getLogger("protonpath.treatment")

PRESCRIBERS = frozenset({Role.ONCOLOGIST})
PLANNERS = frozenset({Role.PHYSICIST})
#: Staff who see the whole plan (setup, dose, DVH); the others see a summary.
PLAN_VIEWERS = frozenset({Role.ONCOLOGIST, Role.PHYSICIST, Role.HEAD, Role.ADMIN_STAFF, Role.THERAPIST})
PRESCRIPTION_STATES = frozenset(
    {State.ACCEPTED, State.QUOTE_SENT, State.QUOTE_ACCEPTED, State.PAID, State.CONSULTATION_BOOKED, State.PLANNING}
)
PLANNING_STATES = frozenset({State.PLANNING})
#: Progress shares of the pipeline's stages (the rest: reading images, writing files).
STAGE_SPAN = {"reading images": (0.0, 0.05), "ray tracing": (0.05, 0.15), "dose matrix": (0.15, 0.55),
              "optimisation": (0.55, 0.82), "minimum MU": (0.82, 0.9), "LET and RBE": (0.9, 0.96),
              "export": (0.96, 1.0)}
#: The same for a plan evaluated under scenarios, and for a plan optimised robustly.
EVALUATED_STAGE_SPAN = {"reading images": (0.0, 0.03), "ray tracing": (0.03, 0.08), "dose matrix": (0.08, 0.3),
                        "optimisation": (0.3, 0.5), "minimum MU": (0.5, 0.55), "robustness evaluation": (0.55, 0.92),
                        "LET and RBE": (0.92, 0.96), "export": (0.96, 1.0)}
ROBUST_STAGE_SPAN = {"reading images": (0.0, 0.02), "ray tracing": (0.02, 0.05), "dose matrix": (0.05, 0.15),
                     "optimisation": (0.15, 0.25), "scenario matrices": (0.25, 0.6),
                     "robust optimisation": (0.6, 0.85), "minimum MU": (0.85, 0.92), "LET and RBE": (0.92, 0.96),
                     "export": (0.96, 1.0)}


def _deny(actor, obj, what: str) -> PermissionDenied:
    audit.record(actor=actor, action=AuditEvent.Action.DENIED, obj=obj, summary=what)
    return PermissionDenied(_("You may not do this."))


def _refuse(code: str, **params) -> ValidationError:
    return ValidationError(plan_error_message(code, params), code=code)


# Prescription ---------------------------------------------------------------------------------


def current_prescription(treatment_request: TreatmentRequest) -> Prescription | None:
    return treatment_request.prescriptions.order_by("-version").first()


def prescribe(*, actor, treatment_request: TreatmentRequest, target: str, dose_gy, fractions: int, note: str = "") -> Prescription:
    """A new version of the request's prescription (the oncologist's)."""
    if not actor.is_authenticated or actor.role not in PRESCRIBERS:
        raise _deny(actor, treatment_request, "prescribe")
    with transaction.atomic():
        return _prescribe(actor, treatment_request, target, dose_gy, fractions, note)


def _prescribe(actor, treatment_request, target, dose_gy, fractions, note) -> Prescription:
    r = TreatmentRequest.objects.select_for_update().get(pk=treatment_request.pk)
    if r.state not in PRESCRIPTION_STATES:
        raise ValidationError(_("The prescription can be changed from acceptance until treatment is scheduled."), code="state")
    try:
        dose = Decimal(str(dose_gy)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        raise ValidationError(_("The dose is a number of Gy(RBE)."), code="dose") from None
    if not Decimal("0") < dose <= Decimal("100"):
        raise ValidationError(_("The dose is between 0 and 100 Gy(RBE)."), code="dose")
    if not 1 <= int(fractions) <= 60:
        raise ValidationError(_("The course needs 1 to 60 fractions."), code="fractions")
    target = (target or "").strip()
    if not target:
        raise ValidationError(_("Name the target (e.g. PTV)."), code="target")
    version = (r.prescriptions.aggregate(v=Max("version"))["v"] or 0) + 1
    rx = Prescription.objects.create(
        treatment_request=r, version=version, target=target[:64], dose_gy=dose, fractions=int(fractions),
        note=note, created_by=actor,
    )
    audit.record(actor=actor, action=AuditEvent.Action.CREATE, obj=rx, treatment_request_id=r.pk, summary=f"prescription v{version}")
    return rx


def prescription_from_decision(treatment_request: TreatmentRequest) -> dict:
    """The review decision's dose and fractions, to start the first prescription from."""
    return {
        "dose_gy": treatment_request.proposed_dose_gy,
        "fractions": treatment_request.proposed_fractions,
        "target": "PTV",
    }


# Plan setup -----------------------------------------------------------------------------------


def may_plan(actor, treatment_request: TreatmentRequest) -> bool:
    return actor.is_authenticated and actor.role in PLANNERS and treatment_request.state in PLANNING_STATES


def ct_series_of(treatment_request: TreatmentRequest):
    return Series.objects.filter(study__treatment_request=treatment_request, modality="CT").select_related("study")


def planning_ct_series(treatment_request: TreatmentRequest) -> Series | None:
    """The CT series a plan would start from: the newest one that has a structure set drawn on it
    (a request also holds diagnostic CTs without contours)."""
    from protonpath.imaging.selectors import structure_sets_for

    for series in ct_series_of(treatment_request).order_by("-pk"):
        if structure_sets_for(series):
            return series
    return None


def structure_mapping(rtstruct: Instance) -> list[dict]:
    """The ROIs of a structure set with their standard names and proposed roles."""
    with rtstruct.file.open("rb") as f:
        rs = pydicom.dcmread(f)
    types = engine.roi_types(rs)
    contours = engine.roi_contours(rs)
    out = []
    for name, polys in contours.items():
        named = catalog.normalise(name, types.get(name, ""))
        out.append({"name": name, "standard": named.standard, "role": named.role if polys else "ignore",
                    "contours": len(polys)})
    return out


def default_setup(category: str, mapping: list[dict], target: str, prescription: Prescription, isocentre_mm) -> dict:
    """The setup a plan starts from: the category's template on the mapped structures."""
    try:
        template = catalog.template_for(category)
    except KeyError:
        raise _refuse("unknown_category") from None
    by_standard = {m["standard"]: m["name"] for m in mapping if m["role"] in ("oar", "external")}

    def resolve(entry):
        name = target if entry["structure"] == "target" else by_standard.get(entry["structure"])
        return None if name is None else {**entry, "structure": name}

    return {
        "structures": mapping,
        "target": target,
        "beams": [{**b, "isocentre_mm": isocentre_mm} for b in template["beams"]],
        "objectives": [o for o in map(resolve, template["objectives"]) if o],
        "goals": [g for g in map(resolve, template["goals"]) if g],
        "settings": dict(template["settings"]),
        "setup_minutes": template["setup_minutes"],
    }


def validate_images(treatment_request: TreatmentRequest, ct_series: Series | None, rtstruct: Instance | None):
    if ct_series is None or ct_series.study.treatment_request_id != treatment_request.pk or ct_series.modality != "CT":
        raise _refuse("no_ct")
    if not ct_series.instances.exists():
        raise _refuse("no_ct")
    if rtstruct is None or rtstruct.pk not in {i.pk for i in structure_sets_for(ct_series)}:
        raise _refuse("rtstruct_not_on_ct")


def validate_robust(robust_settings: dict | None, setup: dict) -> dict:
    """The plan's robust settings checked (treatment/robust.py), against its objectives too."""
    cleaned = robust.clean(robust_settings)
    robust.check_objectives(cleaned, setup)
    return cleaned


def validate_setup(setup: dict, ct_series: Series, rtstruct: Instance) -> None:
    targets = [m for m in setup.get("structures", []) if m.get("role") == "target"]
    if not targets:
        raise _refuse("no_target")
    if len(targets) > 1:
        raise _refuse("several_targets")
    target = targets[0]["name"]
    if setup.get("target") != target:
        raise _refuse("no_target")
    with rtstruct.file.open("rb") as f:
        rs = pydicom.dcmread(f)
    contours = engine.roi_contours(rs).get(target, [])
    z = [i.slice_position_mm for i in slices_of(ct_series) if i.slice_position_mm is not None]
    try:
        engine.check_target(contours, z, target)
    except engine.PlanError as exc:
        raise _refuse(exc.code, **exc.params) from None
    beams = setup.get("beams") or []
    if not beams:
        raise _refuse("no_beams")
    for b in beams:
        try:
            g, c = float(b["gantry_deg"]), float(b.get("couch_deg", 0))
        except (KeyError, TypeError, ValueError):
            raise _refuse("bad_beam") from None
        if not (0 <= g <= 360 and -90 <= c <= 90):
            raise _refuse("bad_beam")
    settings = setup.get("settings") or {}
    if "layer_spacing_mm" in settings:
        try:
            parse_layer_spacing(settings["layer_spacing_mm"])
        except ValueError:
            lo, hi = FIXED_LAYER_SPACING_RANGE_MM
            raise _refuse("bad_layer_spacing", min=f"{lo:g}", max=f"{hi:g}") from None


def create_plan(*, actor, treatment_request: TreatmentRequest, ct_series: Series | None, rtstruct: Instance | None,
                category: str, setup: dict, supersedes: Plan | None = None, robust_settings: dict | None = None) -> Plan:
    """A new plan version (draft) on the request's own images; ``robust_settings`` as
    treatment/robust.py describes (none: a nominal plan)."""
    if not actor.is_authenticated or actor.role not in PLANNERS:
        raise _deny(actor, treatment_request, "create plan")
    with transaction.atomic():
        return _create_plan(actor, treatment_request, ct_series, rtstruct, category, setup, supersedes, robust_settings)


def _create_plan(actor, treatment_request, ct_series, rtstruct, category, setup, supersedes, robust_settings) -> Plan:
    r = TreatmentRequest.objects.select_for_update().get(pk=treatment_request.pk)
    if r.state not in PLANNING_STATES:
        raise ValidationError(_("Plans are made while the request is in planning."), code="state")
    rx = current_prescription(r)
    if rx is None:
        raise _refuse("no_prescription")
    if category not in catalog.templates():
        raise _refuse("unknown_category")
    validate_images(r, ct_series, rtstruct)
    validate_setup(setup, ct_series, rtstruct)
    cleaned = validate_robust(robust_settings, setup)
    version = (r.plans.aggregate(v=Max("version"))["v"] or 0) + 1
    plan = Plan.objects.create(
        treatment_request=r, version=version, prescription=rx, category=category, ct_series=ct_series,
        rtstruct=rtstruct, setup=setup, robust=cleaned, created_by=actor, supersedes=supersedes,
    )
    if supersedes is not None and supersedes.state != PlanState.APPROVED:
        # an approved plan stays the one in force until its successor is approved
        Plan.objects.filter(pk=supersedes.pk).update(state=PlanState.SUPERSEDED)
        audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=supersedes, summary=f"superseded by v{version}")
    audit.record(actor=actor, action=AuditEvent.Action.CREATE, obj=plan, treatment_request_id=r.pk,
                 summary=f"plan v{version}; {robust_summary(cleaned)}")
    return plan


def robust_summary(robust_settings: dict) -> str:
    """The robust settings in the audit trail's words (no personal data)."""
    if robust_settings.get("scenarios", "nominal") == "nominal":
        return "scenarios: nominal only"
    return (f"scenarios: {robust_settings['scenarios']} setup {robust_settings['setup_mm']:g} mm range "
            f"{robust_settings['range_pct']:g} %; robustness {robust_settings['robustness']}")


def new_version(*, actor, plan: Plan, setup: dict | None = None, category: str | None = None,
                robust_settings: dict | None = None) -> Plan:
    """A change to a plan: a new version from its setup (the old one is superseded, never overwritten)."""
    robust_settings = plan.robust if robust_settings is None else robust_settings
    if plan.state in EDITABLE_STATES and setup is not None and not plan.results:
        return update_setup(actor=actor, plan=plan, setup=setup, robust_settings=robust_settings)
    return create_plan(
        actor=actor, treatment_request=plan.treatment_request, ct_series=plan.ct_series, rtstruct=plan.rtstruct,
        category=category or plan.category, setup=setup if setup is not None else plan.setup, supersedes=plan,
        robust_settings=robust_settings,
    )


def update_setup(*, actor, plan: Plan, setup: dict, robust_settings: dict | None = None) -> Plan:
    """Edit a draft's setup (and robust settings) in place (nothing was calculated from it yet)."""
    if not actor.is_authenticated or actor.role not in PLANNERS:
        raise _deny(actor, plan, "edit plan")
    with transaction.atomic():
        return _update_setup(actor, plan, setup, robust_settings)


def _update_setup(actor, plan, setup, robust_settings) -> Plan:
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    if plan.state not in EDITABLE_STATES or plan.results:
        raise ValidationError(_("This plan can no longer be changed: make a new version."), code="frozen")
    validate_setup(setup, plan.ct_series, plan.rtstruct)
    cleaned = validate_robust(plan.robust if robust_settings is None else robust_settings, setup)
    changed = cleaned != plan.robust
    plan.setup = setup
    plan.robust = cleaned
    plan.save(update_fields=["setup", "robust"])
    audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=plan,
                 summary=f"setup; {robust_summary(cleaned)}" if changed else "setup")
    return plan


# Calculation ----------------------------------------------------------------------------------


def start_calculation(*, actor, plan: Plan) -> Plan:
    """Queue the plan's calculation for a task worker (never run inside the web request)."""
    from protonpath.treatment import tasks

    if not actor.is_authenticated or actor.role not in PLANNERS:
        raise _deny(actor, plan, "calculate plan")
    with transaction.atomic():
        plan = Plan.objects.select_for_update().get(pk=plan.pk)
        if plan.state not in STARTABLE_STATES:
            raise ValidationError(_("This plan cannot be calculated now."), code="state")
        if plan.results:
            raise ValidationError(_("This plan was calculated: make a new version."), code="frozen")
        if plan.treatment_request.state not in PLANNING_STATES:
            raise ValidationError(_("Plans are made while the request is in planning."), code="state")
        plan.state = PlanState.QUEUED
        plan.stage = ""
        plan.progress = 0.0
        plan.cancel_requested = False
        plan.error_code = ""
        plan.error_params = {}
        plan.heartbeat_at = None
        plan.started_at = None
        plan.finished_at = None
        plan.save()
        audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=plan, summary="calculation queued")
        transaction.on_commit(lambda: _enqueue(tasks, plan.pk))
    plan.refresh_from_db()
    return plan


def _enqueue(tasks, plan_id: int) -> None:
    result = tasks.calculate_plan.enqueue(plan_id)
    Plan.objects.filter(pk=plan_id).update(task_id=str(result.id)[:64])


def cancel_calculation(*, actor, plan: Plan) -> Plan:
    """Stop a queued or running calculation (a running one stops at its next progress report)."""
    if not actor.is_authenticated or actor.role not in PLANNERS:
        raise _deny(actor, plan, "cancel plan")
    with transaction.atomic():
        plan = Plan.objects.select_for_update().get(pk=plan.pk)
        if plan.state == PlanState.QUEUED:
            plan.state = PlanState.CANCELLED
            plan.finished_at = timezone.now()
        elif plan.state == PlanState.RUNNING:
            plan.cancel_requested = True
        else:
            raise ValidationError(_("This plan is not being calculated."), code="state")
        plan.save()
        audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=plan, summary="calculation cancelled")
    return plan


class Cancelled(Exception):
    pass


def heartbeat_timeout_s() -> float:
    return float(getattr(settings, "PLAN_HEARTBEAT_TIMEOUT_S", 60))


def sweep_stale_plans() -> int:
    """Mark failed the plans whose worker stopped reporting (killed, machine restarted): they can
    be started again. Called by every worker before a plan, by the plan pages, and by
    ``manage.py sweep_plans``."""
    limit = timezone.now() - timedelta(seconds=heartbeat_timeout_s())
    stale = Plan.objects.filter(state=PlanState.RUNNING, heartbeat_at__lt=limit)
    ids = list(stale.values_list("pk", flat=True))
    if not ids:
        return 0
    n = Plan.objects.filter(pk__in=ids, state=PlanState.RUNNING, heartbeat_at__lt=limit).update(
        state=PlanState.FAILED, error_code="worker_lost", error_params={}, finished_at=timezone.now()
    )
    for pk in ids:
        audit.record(actor=None, action=AuditEvent.Action.UPDATE, object_type="treatment.plan", object_id=pk,
                     summary="worker lost: marked failed")
    return n


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


class _Heartbeat(threading.Thread):
    """Writes the plan's heartbeat every few seconds while the worker lives."""

    def __init__(self, plan_id: int, every_s: float):
        super().__init__(daemon=True)
        self.plan_id = plan_id
        self.every_s = every_s
        self.stop = threading.Event()

    def run(self):
        from django.db import connection

        try:
            while not self.stop.wait(self.every_s):
                Plan.objects.filter(pk=self.plan_id, state=PlanState.RUNNING).update(heartbeat_at=timezone.now())
        finally:
            connection.close()


def run_calculation(plan_id: int) -> str:
    """The worker's side: claim a queued plan, run the pipeline with progress, keep the results."""
    sweep_stale_plans()
    now = timezone.now()
    claimed = Plan.objects.filter(pk=plan_id, state=PlanState.QUEUED).update(
        state=PlanState.RUNNING, started_at=now, heartbeat_at=now, worker=_worker_name(), stage="reading images",
        progress=0.0,
    )
    if not claimed:
        return "not queued"
    plan = Plan.objects.select_related("prescription", "ct_series", "rtstruct").get(pk=plan_id)
    beat = _Heartbeat(plan_id, max(1.0, heartbeat_timeout_s() / 6))
    beat.start()
    last = [0.0]
    if robust.is_robust_optimisation(plan.robust, plan.setup):
        spans = ROBUST_STAGE_SPAN
    elif robust.scenarios_of(plan.robust) is not None:
        spans = EVALUATED_STAGE_SPAN
    else:
        spans = STAGE_SPAN

    def report(stage: str, done: int, total: int, force: bool = False) -> None:
        now_s = time.monotonic()
        if not force and now_s - last[0] < 0.5:
            return
        last[0] = now_s
        lo, hi = spans.get(stage, (0.0, 1.0))
        fraction = lo + (hi - lo) * (done / total if total else 1.0)
        Plan.objects.filter(pk=plan_id).update(stage=stage, progress=fraction, heartbeat_at=timezone.now())
        if Plan.objects.filter(pk=plan_id, cancel_requested=True).exists():
            raise Cancelled

    try:
        report("reading images", 0, 1, force=True)
        images = engine.read_images(slices_of(plan.ct_series), plan.rtstruct)
        rx = plan.prescription
        outcome = engine.calculate(
            images, plan.setup, dose_gy=float(rx.dose_gy), fractions=rx.fractions, category=plan.category,
            progress=report, robust_settings=plan.robust,
        )
        report("export", 0, 1, force=True)
        plan_bytes = engine.dataset_bytes(outcome.plan_ds)
        dose_bytes = engine.dataset_bytes(outcome.dose_ds)
        buf = io.BytesIO()
        np.savez_compressed(buf, dose=outcome.dose_gy.astype(np.float32), shape=np.asarray(outcome.dose_grid.shape),
                            origin=np.asarray(outcome.dose_grid.origin_mm), spacing=np.asarray(outcome.dose_grid.spacing_mm))
        with transaction.atomic():
            fresh = Plan.objects.select_for_update().get(pk=plan_id)
            if fresh.state != PlanState.RUNNING or fresh.cancel_requested:
                raise Cancelled
            fresh.rtplan_file.save("plan.dcm", ContentFile(plan_bytes), save=False)
            fresh.rtdose_file.save("dose.dcm", ContentFile(dose_bytes), save=False)
            fresh.dose_file.save("dose.npz", ContentFile(buf.getvalue()), save=False)
            fresh.rtplan_sha256 = hashlib.sha256(plan_bytes).hexdigest()
            fresh.results = outcome.results
            fresh.robustness = outcome.robustness
            fresh.state = PlanState.CALCULATED
            fresh.stage = "done"
            fresh.progress = 1.0
            fresh.finished_at = timezone.now()
            fresh.save()
            audit.record(actor=None, action=AuditEvent.Action.UPDATE, obj=fresh, summary="calculated")
        return "calculated"
    except Cancelled:
        Plan.objects.filter(pk=plan_id).exclude(state=PlanState.FAILED).update(
            state=PlanState.CANCELLED, finished_at=timezone.now(), cancel_requested=False
        )
        audit.record(actor=None, action=AuditEvent.Action.UPDATE, object_type="treatment.plan", object_id=plan_id,
                     summary="calculation stopped on request")
        return "cancelled"
    except engine.PlanError as exc:
        _fail(plan_id, exc.code, exc.params)
        return "failed"
    except Exception:
        logger.exception("plan %s: calculation failed", plan_id)
        _fail(plan_id, "internal", {})
        return "failed"
    finally:
        beat.stop.set()


def _fail(plan_id: int, code: str, params: dict) -> None:
    Plan.objects.filter(pk=plan_id).update(
        state=PlanState.FAILED, error_code=code, error_params=params, finished_at=timezone.now()
    )
    audit.record(actor=None, action=AuditEvent.Action.UPDATE, object_type="treatment.plan", object_id=plan_id,
                 summary=f"calculation failed: {code}")


def initial_setup(treatment_request: TreatmentRequest, ct_series: Series, rtstruct: Instance, category: str) -> dict:
    """A first setup on chosen images: structures mapped by name, one target (the prescription's
    when its name matches, else the first target), the category's template, isocentre at the
    target's centre."""
    validate_images(treatment_request, ct_series, rtstruct)
    mapping = structure_mapping(rtstruct)
    rx = current_prescription(treatment_request)
    targets = [m for m in mapping if m["role"] == "target"]
    wanted = catalog._key(rx.target) if rx else ""
    chosen = next((m for m in targets if catalog._key(m["name"]) == wanted), targets[0] if targets else None)
    for m in targets:
        if m is not chosen:
            m["role"] = "ignore"
    target = chosen["name"] if chosen else ""
    with rtstruct.file.open("rb") as f:
        contours = engine.roi_contours(pydicom.dcmread(f)).get(target, [])
    return default_setup(category, mapping, target, rx, engine.contour_centre_mm(contours))
