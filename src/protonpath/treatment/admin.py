"""Admin: prescriptions and plans are read-only here, for the roles that see them on the pages
(every change goes through the treatment pages: versions, approvals and their audit)."""

from django.contrib import admin

from protonpath.accounts.admin_rules import RoleRulesAdmin
from protonpath.treatment.models import Plan, Prescription
from protonpath.treatment.services import PLAN_VIEWERS


@admin.register(Prescription)
class PrescriptionAdmin(RoleRulesAdmin, admin.ModelAdmin):
    view_rule = PLAN_VIEWERS
    request_field = "treatment_request"
    list_display = ("treatment_request", "version", "target", "dose_gy", "fractions", "created_at")
    readonly_fields = [f.name for f in Prescription._meta.fields]


@admin.register(Plan)
class PlanAdmin(RoleRulesAdmin, admin.ModelAdmin):
    view_rule = PLAN_VIEWERS
    request_field = "treatment_request"
    list_display = ("treatment_request", "version", "state", "stage", "progress", "created_at")
    list_filter = ("state",)
    readonly_fields = [f.name for f in Plan._meta.fields]
