"""Writes: every change to a request goes through one of these functions.

Each one checks who may do it, runs in one transaction, records the change in the request's
history and in the audit trail, and notifies the people concerned after the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, models, transaction
from django.dispatch import Signal
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent, Role
from protonpath.referrals import pathway, selectors, tasks
from protonpath.referrals.identity import identity_key
from protonpath.referrals.models import (
    MedicalDocument,
    Patient,
    State,
    StateChange,
    TreatmentRequest,
)
from protonpath.referrals.uploads import check_upload

#: Sent after a transition is committed: ``sender=TreatmentRequest, treatment_request, action, actor``.
request_transitioned = Signal()

#: Guards other apps add to refuse a transition: ``guard(action_name, treatment_request, actor)``
#: raises :class:`ValidationError` to refuse (e.g. payment in full before the first consultation).
TRANSITION_GUARDS: list[Callable[[str, TreatmentRequest, object], None]] = []

#: Checks of the facts a step depends on beyond the state (the consultation held, the first
#: session given): ``check(action_name, treatment_request)`` returns why the step may not be
#: taken yet, in the reader's language, or "". Other apps add them (see scheduling/facts.py);
#: :func:`perform` refuses with that reason and a "denied" row, and pages do not offer the step.
FACT_CHECKS: list[Callable[[str, TreatmentRequest], str]] = []

PATIENT_FIELDS = (
    "first_name",
    "last_name",
    "sex",
    "birth_date",
    "birth_place",
    "nationality",
    "passport_number",
    "phone",
    "email",
    "address",
    "country_of_residence",
)
#: Patient fields a caller may leave out (an API client written before they existed): a new
#: record gets the field's default, a reused record keeps what it has.
OPTIONAL_PATIENT_FIELDS = frozenset({"passport_number"})
REQUEST_FIELDS = (
    "request_type",
    "reason",
    "covered_by_french_insurance",
    "addressee_name",
    "addressee_institution",
    "addressee_phone",
    "addressee_email",
    "addressee_address",
    "addressee_country",
    "filled_by_guardian",
    "guardian_name",
    "guardian_relationship",
    "guardian_phone",
    "guardian_email",
    "pathology_name",
    "pathology_location",
    "had_surgery",
    "had_chemotherapy",
    "had_radiotherapy",
)
EDITABLE_STATES = frozenset({State.DRAFT, State.INCOMPLETE, State.INFO_REQUESTED})


def _next_reference() -> str:
    year = timezone.localdate().year
    prefix = f"PP-{year}-"
    last = (
        TreatmentRequest.objects.filter(reference__startswith=prefix).order_by("-reference").values_list("reference", flat=True).first()
    )
    number = int(last.rsplit("-", 1)[1]) + 1 if last else 1
    return f"{prefix}{number:05d}"


def create_request(*, actor, patient_data: dict, request_data: dict, reuse_patient: Patient | int | None = None) -> TreatmentRequest:
    """A patient or referring doctor starts a request (as a draft, until submitted).

    ``reuse_patient`` (a record or its id) attaches the request to a patient record the actor
    already sees (see :func:`selectors.reusable_patients`) instead of creating a second record
    for the same person; its details are brought up to date with ``patient_data``.
    """
    if not actor.is_authenticated or actor.role not in (Role.PATIENT, Role.REFERRING_DOCTOR, Role.ADMIN_STAFF):
        raise PermissionDenied(_("Only patients, referring doctors and administrative staff create requests."))
    if actor.role == Role.PATIENT:
        reuse_patient = None  # a patient's requests always go to their own record
    # Checked before the transaction, so that a refusal stays in the audit trail.
    reuse_pk = _reusable_patient_pk(actor, reuse_patient, patient_data) if reuse_patient is not None else None
    try:
        with transaction.atomic():
            return _create_request(actor=actor, patient_data=patient_data, request_data=request_data, reuse_pk=reuse_pk)
    except ValidationError as exc:
        if getattr(exc, "code", None) == "identity":
            # Recorded after the rollback, so that the refusal stays in the trail.
            own = Patient.objects.filter(user=actor).values_list("pk", flat=True).first()
            audit.record(
                actor=actor,
                action=AuditEvent.Action.DENIED,
                object_type="referrals.patient",
                object_id=own or "",
                summary="new request names another person than the account's record",
            )
        raise


#: Who the patient is: a record reused for a new request keeps these as they are (a second
#: request once overwrote the name of the patient's existing record).
IDENTITY_FIELDS = ("first_name", "last_name", "sex", "birth_date", "birth_place")


def _own_record(actor, patient_data: dict) -> tuple[Patient | None, bool]:
    """For a patient account: (the record of the person ``patient_data`` names, whether that
    record is the account's own). The account's own record when it is that person; for a parent
    or legal guardian, a record of one of their earlier requests for that person, or None (a
    new record for another child). Refused when a patient's own account names someone else."""
    key = identity_key(patient_data.get("last_name", ""), patient_data.get("first_name", ""), patient_data.get("birth_date"))
    own = Patient.objects.select_for_update().filter(user=actor).first()
    if own is not None and own.identity_key == key:
        return own, True
    if actor.fills_in_for_patient:
        theirs = Patient.objects.filter(identity_key=key, requests__submitted_by=actor).values("pk")
        earlier = Patient.objects.select_for_update().filter(pk__in=theirs).order_by("pk").first()
        return earlier, own is None and earlier is None
    if own is None:
        return None, True
    raise ValidationError(
        _(
            "Your account's patient record is for %(name)s, born %(birth)s: a request from this account is for that "
            "person. If you fill in a request for someone else (your child, a person under your guardianship), "
            "tick “filled in by a parent or legal guardian”; to correct your own name or date of birth, change your "
            "first request."
        )
        % {"name": own.full_name, "birth": date_format(own.birth_date, "SHORT_DATE_FORMAT")},
        code="identity",
    )


def _create_request(*, actor, patient_data: dict, request_data: dict, reuse_pk: int | None) -> TreatmentRequest:
    patient = None
    link_account = False
    if actor.role == Role.PATIENT:
        if request_data.get("filled_by_guardian") and not actor.fills_in_for_patient:
            # The account holder says they fill in for someone else: from now on the account is theirs.
            actor.fills_in_for_patient = True
            actor.save(update_fields=["fills_in_for_patient"])
        patient, link_account = _own_record(actor, patient_data)
    elif reuse_pk is not None:
        patient = Patient.objects.select_for_update().filter(pk=reuse_pk).first()
        if patient is None:  # merged away since the check
            raise ValidationError(_("This patient record no longer exists; please start again."), code="reuse")
    reused = patient is not None and patient.pk is not None
    if patient is None:
        patient = Patient(user=actor if link_account else None)
    for field in PATIENT_FIELDS:
        if reused and actor.role == Role.PATIENT and field in IDENTITY_FIELDS:
            continue  # the person is the same: their record's identity stays as it is
        if field in OPTIONAL_PATIENT_FIELDS and field not in patient_data:
            continue
        setattr(patient, field, patient_data[field])
    _normalise_countries(patient, treatment_request=None)
    patient.full_clean()
    if actor.role == Role.PATIENT and patient.is_child and not request_data.get("filled_by_guardian"):
        raise ValidationError(
            _("The patient is a minor: a parent or legal guardian fills in the request. Tick the box and give their name and contact."),
            code="guardian",
        )
    patient.save()
    if reuse_pk is not None or (reused and actor.role == Role.PATIENT):
        audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=patient, summary="reused for a new request")

    treatment_request = TreatmentRequest(
        patient=patient,
        submitted_by=actor,
        referring_doctor=actor if actor.role == Role.REFERRING_DOCTOR else None,
    )
    for field in REQUEST_FIELDS:
        if field in request_data:
            setattr(treatment_request, field, request_data[field])
    _normalise_countries(None, treatment_request=treatment_request)
    for _attempt in range(5):
        treatment_request.reference = _next_reference()
        try:
            with transaction.atomic():
                treatment_request.full_clean()
                treatment_request.save()
            break
        except IntegrityError:
            # Another request took this reference at the same moment: take the next one.
            treatment_request.pk = None
    else:
        raise ValidationError(_("Could not allocate a reference; please try again."))
    audit.record(actor=actor, action=AuditEvent.Action.CREATE, obj=treatment_request, to_state=State.DRAFT)
    return treatment_request


@transaction.atomic
def update_request(*, actor, treatment_request: TreatmentRequest, patient_data: dict, request_data: dict) -> TreatmentRequest:
    """The owner (or staff) corrects the request while it is a draft or waiting for information."""
    treatment_request = _locked(treatment_request)
    if not (selectors.is_owner(actor, treatment_request) or actor.role == Role.ADMIN_STAFF):
        raise PermissionDenied(_("You may not change this request."))
    if treatment_request.state not in EDITABLE_STATES:
        raise ValidationError(_("This request can no longer be changed."))
    patient = treatment_request.patient
    for field in PATIENT_FIELDS:
        if field in patient_data:
            setattr(patient, field, patient_data[field])
    _normalise_countries(patient, treatment_request=None)
    patient.full_clean()
    patient.save()
    for field in REQUEST_FIELDS:
        if field in request_data:
            setattr(treatment_request, field, request_data[field])
    _normalise_countries(None, treatment_request=treatment_request)
    treatment_request.full_clean()
    treatment_request.save()
    audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=treatment_request)
    return treatment_request


def _normalise_countries(patient: Patient | None, *, treatment_request: TreatmentRequest | None) -> None:
    """Codes in capitals ("ma" is MA); anything else is left for the validators to refuse."""
    pairs = [(patient, ("nationality", "country_of_residence")), (treatment_request, ("addressee_country",))]
    for obj, fields in pairs:
        if obj is None:
            continue
        for field in fields:
            value = getattr(obj, field)
            if isinstance(value, str):
                setattr(obj, field, value.strip().upper())


def _reusable_patient_pk(actor, reuse_patient: Patient | int, patient_data: dict) -> int:
    """The id of the record to reuse if ``actor`` sees it and it is the same person; else refused."""
    pk = reuse_patient.pk if isinstance(reuse_patient, Patient) else reuse_patient
    candidates = selectors.reusable_patients(
        actor,
        last_name=patient_data.get("last_name", ""),
        first_name=patient_data.get("first_name", ""),
        birth_date=patient_data.get("birth_date"),
    )
    try:
        return candidates.values_list("pk", flat=True).get(pk=pk)
    except (Patient.DoesNotExist, ValueError, TypeError):
        # One answer whether the record does not exist, is another doctor's or another person.
        audit.record(actor=actor, action=AuditEvent.Action.DENIED, object_type="referrals.patient", object_id=str(pk))
        raise ValidationError(
            _("This patient record cannot be used for this request: check the name and date of birth."), code="reuse"
        ) from None


def _locked(treatment_request: TreatmentRequest) -> TreatmentRequest:
    return TreatmentRequest.objects.select_for_update(of=("self",)).select_related("patient", "submitted_by", "referring_doctor").get(
        pk=treatment_request.pk
    )


def may_add_documents(actor, treatment_request: TreatmentRequest) -> bool:
    if selectors.is_owner(actor, treatment_request):
        return treatment_request.state in EDITABLE_STATES
    return actor.role in (Role.ADMIN_STAFF, Role.ONCOLOGIST) and treatment_request.is_open


def add_document(*, actor, treatment_request: TreatmentRequest, kind: str, file, description: str = "") -> MedicalDocument:
    """Attach a document to the medical file. The whole upload is refused on any problem."""
    checked = check_upload(file, kind=kind)
    with transaction.atomic():
        treatment_request = _locked(treatment_request)
        if not may_add_documents(actor, treatment_request):
            raise PermissionDenied(_("Documents cannot be added to this request now."))
        if treatment_request.documents.filter(sha256=checked.sha256).exists():
            raise ValidationError(_("This file is already in the medical file."), code="duplicate")
        document = MedicalDocument(
            treatment_request=treatment_request,
            kind=kind,
            original_name=(getattr(file, "name", "") or "document")[-255:],
            content_type=checked.content_type,
            size_bytes=checked.size_bytes,
            sha256=checked.sha256,
            description=description[:300],
            uploaded_by=actor,
        )
        document.file.save(document.original_name, file, save=False)
        try:
            document.save()
            audit.record(actor=actor, action=AuditEvent.Action.CREATE, obj=document, summary=f"kind={kind}")
        except Exception:
            # Nothing half-saved: the stored file goes with the failed database write.
            document.file.delete(save=False)
            raise
    return document


@transaction.atomic
def remove_document(*, actor, document: MedicalDocument) -> None:
    treatment_request = _locked(document.treatment_request)
    if not may_add_documents(actor, treatment_request):
        raise PermissionDenied(_("Documents cannot be removed from this request now."))
    stored = document.file.name
    storage = document.file.storage
    audit.record(actor=actor, action=AuditEvent.Action.DELETE, obj=document, summary=f"kind={document.kind}")
    document.delete()
    transaction.on_commit(lambda: storage.delete(stored))


def require_permission(*, actor, treatment_request: TreatmentRequest, action: str) -> None:
    """Refuse (and record the refusal) unless ``actor``'s role may take ``action`` on this request."""
    definition = pathway.ACTIONS[action]
    owner = selectors.is_owner(actor, treatment_request)
    if not actor.is_authenticated or not pathway.role_may(definition, role=actor.role, is_owner=owner):
        audit.record(actor=actor, action=AuditEvent.Action.DENIED, obj=treatment_request, summary=f"action={action}")
        raise PermissionDenied(_("You may not do this."))


def missing_fact(treatment_request: TreatmentRequest, action: str) -> str:
    """Why ``action`` may not be taken yet on this request (see :data:`FACT_CHECKS`); "" if it may."""
    for check in FACT_CHECKS:
        reason = check(action, treatment_request)
        if reason:
            return str(reason)
    return ""


def require_facts(*, actor, treatment_request: TreatmentRequest, action: str) -> None:
    """Refuse (and record the refusal) while a fact ``action`` depends on is missing."""
    reason = missing_fact(treatment_request, action)
    if reason:
        audit.record(
            actor=actor, action=AuditEvent.Action.DENIED, obj=treatment_request, summary=f"action={action}: facts missing"
        )
        raise ValidationError(reason, code="facts")


def perform(*, actor, treatment_request: TreatmentRequest, action: str, note: str = "", **changes) -> TreatmentRequest:
    """Move a request along its path by ``action`` (see :mod:`protonpath.referrals.pathway`)."""
    definition = pathway.ACTIONS.get(action)
    if definition is None:
        raise ValidationError(_("Unknown action."))
    # Who may act does not depend on the state: checked first, so the refusal stays in the trail.
    require_permission(actor=actor, treatment_request=treatment_request, action=action)
    if pathway.applies(definition, state=treatment_request.state, is_international=treatment_request.is_international):
        # The facts the step records (outside the transaction, so that the refusal stays too).
        require_facts(actor=actor, treatment_request=treatment_request, action=action)
    with transaction.atomic():
        treatment_request = _locked(treatment_request)
        if not pathway.applies(definition, state=treatment_request.state, is_international=treatment_request.is_international):
            raise ValidationError(
                _("This cannot be done while the request is '%(state)s'.") % {"state": treatment_request.get_state_display()},
                code="state",
            )
        reason = missing_fact(treatment_request, action)  # again, under the lock
        if reason:
            raise ValidationError(reason, code="facts")
        note = (note or "").strip()
        if definition.needs_note and not note:
            raise ValidationError(_("Please give a reason."), code="note")
        for guard in TRANSITION_GUARDS:
            guard(action, treatment_request, actor)
        for field, value in changes.items():
            setattr(treatment_request, field, value)
        previous = treatment_request.state
        now = timezone.now()
        treatment_request.state = definition.target
        treatment_request.state_changed_at = now
        if action in ("submit", "resubmit"):
            treatment_request.submitted_at = treatment_request.submitted_at or now
        treatment_request.full_clean()
        treatment_request.save()
        StateChange.objects.create(
            treatment_request=treatment_request, from_state=previous, to_state=definition.target, actor=actor, at=now, note=note
        )
        audit.record(
            actor=actor,
            action=AuditEvent.Action.TRANSITION,
            obj=treatment_request,
            from_state=previous,
            to_state=definition.target,
            summary=f"action={action}",
        )
        transaction.on_commit(lambda: _after_commit(treatment_request, action, actor))
    return treatment_request


def _after_commit(treatment_request: TreatmentRequest, action: str, actor) -> None:
    tasks.notify_transition.enqueue(treatment_request.pk)
    request_transitioned.send(sender=TreatmentRequest, treatment_request=treatment_request, action=action, actor=actor)


# Named transitions with their own rules -------------------------------------------------------


def submit(*, actor, treatment_request: TreatmentRequest) -> TreatmentRequest:
    return perform(actor=actor, treatment_request=treatment_request, action="submit")


def resubmit(*, actor, treatment_request: TreatmentRequest, note: str = "") -> TreatmentRequest:
    return perform(actor=actor, treatment_request=treatment_request, action="resubmit", note=note)


def mark_incomplete(*, actor, treatment_request: TreatmentRequest, missing: str) -> TreatmentRequest:
    return perform(
        actor=actor, treatment_request=treatment_request, action="mark_incomplete", note=missing, missing_information=missing
    )


def mark_complete(*, actor, treatment_request: TreatmentRequest) -> TreatmentRequest:
    require_permission(actor=actor, treatment_request=treatment_request, action="mark_complete")
    missing = selectors.missing_items(treatment_request)
    if missing:
        raise ValidationError(
            _("The medical file still lacks: %(items)s.") % {"items": ", ".join(item.label for item in missing)},
            code="incomplete",
        )
    return perform(actor=actor, treatment_request=treatment_request, action="mark_complete", missing_information="")


def send_to_review(*, actor, treatment_request: TreatmentRequest) -> TreatmentRequest:
    return perform(actor=actor, treatment_request=treatment_request, action="send_to_review")


def decide(
    *,
    actor,
    treatment_request: TreatmentRequest,
    decision: str,
    note: str = "",
    dose_gy: Decimal | None = None,
    fractions: int | None = None,
) -> TreatmentRequest:
    """An oncologist records the review's decision: ``accept``, ``decline`` or ``request_information``."""
    if decision not in ("accept", "decline", "request_information"):
        raise ValidationError(_("Unknown decision."))
    changes: dict = {"decision_note": note, "decided_by": actor, "decided_at": timezone.now(), "decision_sent_at": None}
    if decision == "accept":
        if dose_gy is None or fractions is None:
            raise ValidationError(_("An accepted request needs the proposed dose and number of fractions."), code="dose")
        if not (Decimal("0") < Decimal(dose_gy) <= Decimal("90")) or not (1 <= int(fractions) <= 60):
            raise ValidationError(_("The dose must be between 0 and 90 Gy (RBE) in 1 to 60 fractions."), code="dose")
        changes.update(proposed_dose_gy=Decimal(dose_gy), proposed_fractions=int(fractions))
    if decision == "request_information":
        changes["missing_information"] = note
    return perform(actor=actor, treatment_request=treatment_request, action=decision, note=note, **changes)


@transaction.atomic
def send_decision(*, actor, treatment_request: TreatmentRequest) -> TreatmentRequest:
    """Administrative staff send the recorded decision to the patient and the referring doctor."""
    treatment_request = _locked(treatment_request)
    if actor.role not in pathway.STAFF:
        raise PermissionDenied(_("You may not do this."))
    if treatment_request.state not in pathway.DECISION_STATES or treatment_request.decision_sent_at:
        raise ValidationError(_("There is no decision to send."), code="state")
    treatment_request.decision_sent_at = timezone.now()
    treatment_request.save(update_fields=["decision_sent_at"])
    audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=treatment_request, summary="decision sent")
    transaction.on_commit(lambda: tasks.notify_decision.enqueue(treatment_request.pk))
    return treatment_request


def cancel(*, actor, treatment_request: TreatmentRequest, reason: str) -> TreatmentRequest:
    return perform(
        actor=actor, treatment_request=treatment_request, action="cancel", note=reason, cancellation_reason=reason
    )


# Patient records: merging two records of the same person -----------------------------------


def _patient_relations() -> list[models.ForeignObjectRel]:
    """Every relation pointing to Patient, whatever app declares it (hidden ones included).

    Many-to-many relations are moved through their intermediate model's foreign key, which is
    among these relations as well.
    """
    return [
        field
        for field in Patient._meta.get_fields(include_hidden=True)
        if isinstance(field, models.ForeignObjectRel) and not field.many_to_many and field.field.concrete
    ]


def require_merge_permission(actor) -> None:
    if not getattr(actor, "is_authenticated", False) or actor.role not in selectors.PATIENT_MERGERS:
        audit.record(actor=actor, action=AuditEvent.Action.DENIED, object_type="referrals.patient", summary="merge")
        raise PermissionDenied(_("Only administrative staff may merge patient records."))


def merge_refusal(keep: Patient, remove: Patient) -> str:
    """Why these two records may not be merged, in the reader's language; empty if they may."""
    if keep.pk == remove.pk:
        return _("A record cannot be merged with itself.")
    if keep.user_id and remove.user_id:
        return _(
            "Both records belong to a patient's own account: two accounts are two people for the system, "
            "so these records cannot be merged."
        )
    if keep.birth_date != remove.birth_date:
        return _("The two records have different dates of birth: correct the wrong one before merging.")
    return ""


def _moved_text(moved: dict[str, int]) -> str:
    return ",".join(f"{label}={count}" for label, count in sorted(moved.items()) if count)


def _identity_summary(keep: Patient, remove: Patient, moved_text: str) -> str:
    """The removed record's identity for the audit trail (never the logs: see audit.record)."""
    head = (
        f"merged into patient #{keep.pk}; removed: birth_date={remove.birth_date.isoformat()} sex={remove.sex} "
        f"user={remove.user_id or '-'} created={remove.created_at.date().isoformat()}"
    )
    names = f" last_name={remove.last_name[:80]!r} first_name={remove.first_name[:80]!r}"
    tail = f" moved: {moved_text or 'nothing'}"
    return (head + names + tail)[:300]


def merge_patients(*, actor, keep: Patient | int, remove: Patient | int) -> Patient:
    """Merge the record ``remove`` into ``keep``: everything pointing to it moves, then it goes.

    One transaction, both rows locked. Refused for two patients' own accounts or two different
    dates of birth (see :func:`merge_refusal`). The removed record's identity stays in the audit
    trail.
    """
    require_merge_permission(actor)
    keep_pk = keep.pk if isinstance(keep, Patient) else int(keep)
    remove_pk = remove.pk if isinstance(remove, Patient) else int(remove)
    try:
        if keep_pk == remove_pk:
            raise ValidationError(_("A record cannot be merged with itself."), code="merge")
        with transaction.atomic():
            # Both rows locked, always in the same order, so that two merges cannot deadlock.
            locked = {p.pk: p for p in Patient.objects.select_for_update().filter(pk__in=[keep_pk, remove_pk]).order_by("pk")}
            if len(locked) != 2:
                raise ValidationError(_("One of these patient records no longer exists."), code="merge")
            kept, removed = locked[keep_pk], locked[remove_pk]
            refusal = merge_refusal(kept, removed)
            if refusal:
                raise ValidationError(refusal, code="merge")
            moved_text = _moved_text(_move_related(kept, removed))
            account = removed.user_id
            summary = _identity_summary(kept, removed, moved_text)
            removed.delete()
            if account and not kept.user_id:
                # The patient's own account follows the record that stays.
                kept.user_id = account
                kept.save(update_fields=["user"])
            audit.record(actor=actor, action=AuditEvent.Action.DELETE, object_type="referrals.patient", object_id=remove_pk, summary=summary)
            audit.record(
                actor=actor,
                action=AuditEvent.Action.UPDATE,
                obj=kept,
                summary=f"merged patient #{remove_pk} into this record; {moved_text}",
            )
    except ValidationError:
        audit.record(
            actor=actor,
            action=AuditEvent.Action.DENIED,
            object_type="referrals.patient",
            object_id=remove_pk,
            summary=f"merge into #{keep_pk} refused",
        )
        raise
    return kept


def _move_related(kept: Patient, removed: Patient) -> dict[str, int]:
    """Point every row that refers to ``removed`` at ``kept``; returns the count per model."""
    moved: dict[str, int] = {}
    for relation in _patient_relations():
        model = relation.related_model
        field = relation.field
        manager = model._base_manager
        rows = list(manager.select_for_update().filter(**{field.attname: removed.pk}).values_list("pk", flat=True))
        if not rows:
            continue
        if relation.one_to_one and manager.filter(**{field.attname: kept.pk}).exists():
            raise ValidationError(
                _("Both records have their own %(what)s: these records cannot be merged automatically.")
                % {"what": model._meta.verbose_name},
                code="merge",
            )
        if model._meta.auto_created:
            # A many-to-many table: drop the links the kept record already has, then move the rest.
            other = next(f for f in model._meta.fields if f.is_relation and f is not field and f.related_model is not None)
            already = manager.filter(**{field.attname: kept.pk}).values_list(other.attname, flat=True)
            manager.filter(pk__in=rows, **{f"{other.attname}__in": list(already)}).delete()
            rows = list(manager.filter(pk__in=rows).values_list("pk", flat=True))
        try:
            with transaction.atomic():
                count = manager.filter(pk__in=rows).update(**{field.attname: kept.pk})
        except IntegrityError:
            raise ValidationError(
                _("Both records have conflicting %(what)s: these records cannot be merged automatically.")
                % {"what": model._meta.verbose_name_plural},
                code="merge",
            ) from None
        moved[model._meta.label_lower] = moved.get(model._meta.label_lower, 0) + count
    return moved
