from django.contrib import admin

from protonpath.accounts.admin_rules import RoleRulesAdmin
from protonpath.accounts.models import STAFF_ROLES
from protonpath.scheduling.models import (
    Consultation,
    GantrySession,
    MachineDowntime,
    TreatmentCourse,
)
from protonpath.scheduling.services import CONSULTATION_MANAGERS, COURSE_PLANNERS, SESSION_RECORDERS


@admin.register(Consultation)
class ConsultationAdmin(RoleRulesAdmin, admin.ModelAdmin):
    view_rule = STAFF_ROLES
    change_rule = CONSULTATION_MANAGERS
    request_field = "treatment_request"
    list_display = ("start", "doctor", "kind", "status", "treatment_request")
    list_filter = ("status", "kind", "doctor")
    date_hierarchy = "start"
    # Bookings go through the pages (slot checks, e-mails, path transition): read-only here.
    readonly_fields = [f.name for f in Consultation._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(TreatmentCourse)
class TreatmentCourseAdmin(RoleRulesAdmin, admin.ModelAdmin):
    view_rule = STAFF_ROLES
    add_rule = change_rule = COURSE_PLANNERS
    request_field = "treatment_request"
    list_display = (
        "treatment_request",
        "fractions",
        "category",
        "ready_date",
        "due_date",
        "urgency",
    )
    readonly_fields = ("created_by", "created_at", "usual_start_min")


@admin.register(GantrySession)
class GantrySessionAdmin(RoleRulesAdmin, admin.ModelAdmin):
    view_rule = STAFF_ROLES
    change_rule = SESSION_RECORDERS
    request_field = "course__treatment_request"
    list_display = ("start", "gantry_id", "course", "fraction_number", "status")
    list_filter = ("status", "gantry_id")
    date_hierarchy = "start"
    readonly_fields = [f.name for f in GantrySession._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(MachineDowntime)
class MachineDowntimeAdmin(RoleRulesAdmin, admin.ModelAdmin):
    view_rule = STAFF_ROLES
    change_rule = delete_rule = SESSION_RECORDERS
    list_display = ("start", "end", "gantry_id", "reason")
    readonly_fields = ("recorded_by", "recorded_at")

    def has_add_permission(self, request):
        return False  # recorded from the agenda, which moves the sessions it hits
