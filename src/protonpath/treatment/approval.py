"""Two-person approval of a calculated plan, what it sets going (the course on the gantry, the
request's next state, the files in the index), the export to the OIS and the staff's zip."""

from __future__ import annotations

import hashlib
import io
import logging
import tempfile
import zipfile
from pathlib import Path

import pydicom
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent, Role
from protonpath.imaging import ingest
from protonpath.imaging.files import classify_file
from protonpath.imaging.models import Instance, ReceivedVia
from protonpath.referrals import services as referral_services
from protonpath.referrals.models import State
from protonpath.treatment.models import Plan, PlanState
from protonpath.treatment.services import PLAN_VIEWERS, current_prescription

logger = logging.getLogger("protonpath.treatment")


def rtplan_digest(plan: Plan) -> str:
    with plan.rtplan_file.open("rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def may_approve(actor, plan: Plan) -> bool:
    if not actor.is_authenticated:
        return False
    if actor.role == Role.PHYSICIST:
        return plan.state == PlanState.CALCULATED
    if actor.role == Role.ONCOLOGIST:
        return plan.state == PlanState.PHYSICIST_APPROVED and plan.physicist_approved_by_id != actor.pk
    return False


def approve(*, actor, plan: Plan) -> Plan:
    """The physicist approves a calculated plan, then an oncologist (another person) does.

    The physicist's approval freezes the plan: the SHA-256 of its RT Ion Plan is recorded, and the
    oncologist's approval checks it. The oncologist's approval makes the plan the one in force:
    older approved versions are superseded, the files go into the request's imaging index, the
    treatment course gets the plan's fractions and session length, the request moves to
    'treatment scheduled', and the export to the OIS is queued.
    """
    if not actor.is_authenticated or actor.role not in (Role.PHYSICIST, Role.ONCOLOGIST):
        audit.record(actor=actor, action=AuditEvent.Action.DENIED, obj=plan, summary="approve")
        raise PermissionDenied(_("You may not do this."))
    with transaction.atomic():
        plan = Plan.objects.select_for_update().select_related("treatment_request", "prescription").get(pk=plan.pk)
        r = plan.treatment_request
        if actor.role == Role.PHYSICIST:
            if plan.state != PlanState.CALCULATED:
                raise ValidationError(_("Only a calculated plan can be approved."), code="state")
            plan.rtplan_sha256 = rtplan_digest(plan)
            plan.physicist_approved_by = actor
            plan.physicist_approved_at = timezone.now()
            plan.state = PlanState.PHYSICIST_APPROVED
            plan.save()
            audit.record(actor=actor, action=AuditEvent.Action.TRANSITION, obj=plan, treatment_request_id=r.pk,
                         from_state=PlanState.CALCULATED, to_state=plan.state, summary=f"sha256={plan.rtplan_sha256[:16]}")
            return plan
        if plan.state != PlanState.PHYSICIST_APPROVED:
            raise ValidationError(_("The physicist approves the plan first."), code="state")
        if plan.physicist_approved_by_id == actor.pk:
            raise ValidationError(_("A second person approves the plan."), code="same_person")
        if rtplan_digest(plan) != plan.rtplan_sha256:
            raise ValidationError(_("The plan's RT Ion Plan changed after the physicist's approval: it cannot be approved."), code="digest")
        current = current_prescription(r)
        if current is None or current.pk != plan.prescription_id:
            raise ValidationError(_("The prescription changed since this plan was made: make a new version."), code="prescription")
        plan.oncologist_approved_by = actor
        plan.oncologist_approved_at = timezone.now()
        plan.state = PlanState.APPROVED
        plan.save()
        audit.record(actor=actor, action=AuditEvent.Action.TRANSITION, obj=plan, treatment_request_id=r.pk,
                     from_state=PlanState.PHYSICIST_APPROVED, to_state=PlanState.APPROVED,
                     summary=f"sha256={plan.rtplan_sha256[:16]}")
        for older in Plan.objects.filter(treatment_request=r, state=PlanState.APPROVED).exclude(pk=plan.pk):
            older.state = PlanState.SUPERSEDED
            older.save(update_fields=["state"])
            audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=older, summary=f"superseded by v{plan.version}")
        file_in_index(actor=actor, plan=plan)
        course_for_plan(actor=actor, plan=plan)
        r.refresh_from_db()
        if r.state == State.PLANNING:
            referral_services.perform(actor=actor, treatment_request=r, action="schedule_treatment",
                                      note=_("Plan v%(v)s approved.") % {"v": plan.version})
        transaction.on_commit(lambda: _queue_export(plan.pk))
    return plan


def _queue_export(plan_id: int) -> None:
    from protonpath.treatment import tasks

    if settings.PLAN_DESTINATION_HOST:
        tasks.send_plan.enqueue(plan_id)


def file_in_index(*, actor, plan: Plan) -> list[Instance]:
    """The RT Ion Plan and RT Dose in the request's imaging index (beside the CT they refer to)."""
    stored = []
    with tempfile.TemporaryDirectory(prefix="protonpath-plan-") as tmp:
        for name, field in (("RTPLAN.dcm", plan.rtplan_file), ("RTDOSE.dcm", plan.rtdose_file)):
            path = Path(tmp) / name
            with field.open("rb") as f:
                path.write_bytes(f.read())
            dicom_file = classify_file(path, name)
            outcome = ingest.store_instance(dicom_file, treatment_request=plan.treatment_request,
                                            via=ReceivedVia.UPLOAD, actor=actor)
            stored.append(outcome)
    audit.record(actor=actor, action=AuditEvent.Action.CREATE, obj=plan, summary="RT Ion Plan and RT Dose filed in the imaging index")
    return stored


def course_for_plan(*, actor, plan: Plan):
    """Create or update the request's treatment course from the plan, and place its sessions."""
    from protonpath.scheduling import services as scheduling
    from protonpath.scheduling.models import ACTIVE_SESSION_STATES, SessionStatus, TreatmentCourse

    rx = plan.prescription
    minutes = int(plan.results.get("session_minutes") or 0) or None
    course = TreatmentCourse.objects.filter(treatment_request=plan.treatment_request).first()
    if course is None:
        course = scheduling.create_course(
            actor=actor, treatment_request=plan.treatment_request, category=plan.category,
            ready_date=timezone.localdate(), fractions=rx.fractions,
        )
    changed = []
    if course.fractions != rx.fractions:
        course.fractions = rx.fractions
        changed.append("fractions")
    if minutes and course.session_minutes != minutes:
        course.session_minutes = minutes
        changed.append("session_minutes")
    if changed:
        course.save(update_fields=changed)
        audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=course, summary=f"from plan v{plan.version}: {','.join(changed)}")
    active = course.sessions.filter(status__in=ACTIVE_SESSION_STATES)
    if changed and active.exists() and not active.exclude(status=SessionStatus.PLANNED).exists():
        # sessions placed before the plan (none announced yet): placed again with the plan's length
        n = active.update(status=SessionStatus.CANCELLED, status_note="replaced: plan approved")
        audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=course, summary=f"{n} planned sessions replaced")
    if not course.sessions.filter(status__in=ACTIVE_SESSION_STATES).exists():
        try:
            with transaction.atomic():
                scheduling.schedule_course(actor=actor, course=course)
        except ValidationError:
            logger.info("plan %s: course %s kept unscheduled (no room found)", plan.pk, course.pk)
    return course


def export_files(plan: Plan) -> list[tuple[str, bytes]]:
    out = []
    for name, field in (("RTPLAN.dcm", plan.rtplan_file), ("RTDOSE.dcm", plan.rtdose_file)):
        with field.open("rb") as f:
            out.append((name, f.read()))
    with plan.rtstruct.file.open("rb") as f:
        out.append(("RTSTRUCT.dcm", f.read()))
    return out


def plan_zip(*, actor, plan: Plan) -> tuple[bytes, str]:
    """RT Ion Plan, RT Dose and the RTSTRUCT in one zip, for the department's staff."""
    if not actor.is_authenticated or actor.role not in PLAN_VIEWERS or not plan.rtplan_file:
        audit.record(actor=actor, action=AuditEvent.Action.DENIED, obj=plan, summary="plan zip")
        raise PermissionDenied(_("You may not do this."))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in export_files(plan):
            z.writestr(name, data)
    audit.record(actor=actor, action=AuditEvent.Action.DOWNLOAD, obj=plan, summary="plan zip")
    return buf.getvalue(), f"plan-{plan.treatment_request.pk}-v{plan.version}.zip"


def send_to_destination(plan: Plan, *, ae_title: str | None = None, host: str | None = None, port: int | None = None) -> str:
    """C-STORE the approved plan's RT Ion Plan, RT Dose and RTSTRUCT to the OIS; returns a status."""
    from pynetdicom import AE

    host = host or settings.PLAN_DESTINATION_HOST
    port = port or settings.PLAN_DESTINATION_PORT
    ae_title = ae_title or settings.PLAN_DESTINATION_AE
    datasets = [pydicom.dcmread(io.BytesIO(data)) for _name, data in export_files(plan)]
    ae = AE(ae_title=settings.DICOM_AE_TITLE)
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(host, port, ae_title=ae_title)
    if not assoc.is_established:
        status = "association refused or destination unreachable"
    else:
        try:
            codes = [getattr(assoc.send_c_store(ds), "Status", None) for ds in datasets]
        finally:
            assoc.release()
        status = "sent" if all(c == 0 for c in codes) else f"refused: {codes}"
    Plan.objects.filter(pk=plan.pk).update(export_status=f"{ae_title}@{host}:{port} {status}"[:200],
                                           exported_at=timezone.now() if status == "sent" else None)
    audit.record(actor=None, action=AuditEvent.Action.EXPORT, obj=plan, summary=f"C-STORE to {ae_title}: {status}")
    return status
