from django.contrib import admin

from protonpath.accounts.admin_rules import RoleRulesAdmin
from protonpath.accounts.models import STAFF_ROLES
from protonpath.referrals import pathway, selectors
from protonpath.referrals.models import MedicalDocument, Patient, StateChange, TreatmentRequest


class DocumentInline(RoleRulesAdmin, admin.TabularInline):
    view_rule = STAFF_ROLES
    model = MedicalDocument
    extra = 0
    fields = ("kind", "original_name", "content_type", "size_bytes", "uploaded_by", "uploaded_at")
    readonly_fields = fields
    can_delete = False


class HistoryInline(RoleRulesAdmin, admin.TabularInline):
    view_rule = STAFF_ROLES
    model = StateChange
    extra = 0
    readonly_fields = ("from_state", "to_state", "actor", "at", "note")
    can_delete = False


@admin.register(TreatmentRequest)
class TreatmentRequestAdmin(RoleRulesAdmin, admin.ModelAdmin):
    # Staff see the requests they see on the site; the department's office (pathway.STAFF)
    # corrects them. Nobody deletes one.
    view_rule = STAFF_ROLES
    add_rule = change_rule = pathway.STAFF
    request_field = "pk"
    list_display = ("reference", "patient", "request_type", "state", "covered_by_french_insurance", "created_at")
    list_filter = ("state", "request_type", "covered_by_french_insurance")
    search_fields = ("reference", "patient__last_name", "pathology_name")
    readonly_fields = ("reference", "state", "state_changed_at", "submitted_at", "decided_by", "decided_at", "decision_sent_at")
    inlines = [DocumentInline, HistoryInline]

    def has_delete_permission(self, request, obj=None):
        return False  # requests are cancelled, never deleted


@admin.register(Patient)
class PatientAdmin(RoleRulesAdmin, admin.ModelAdmin):
    # Patient records: seen by staff through their requests, corrected by those who merge them.
    view_rule = STAFF_ROLES
    add_rule = change_rule = selectors.PATIENT_MERGERS
    request_field = "requests"
    list_display = ("last_name", "first_name", "birth_date", "nationality")
    search_fields = ("last_name", "first_name", "email")

    def has_delete_permission(self, request, obj=None):
        return False
