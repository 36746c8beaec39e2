from django.contrib import admin

from protonpath.scheduling.models import (
    Consultation,
    GantrySession,
    MachineDowntime,
    TreatmentCourse,
)


@admin.register(Consultation)
class ConsultationAdmin(admin.ModelAdmin):
    list_display = ("start", "doctor", "kind", "status", "treatment_request")
    list_filter = ("status", "kind", "doctor")
    date_hierarchy = "start"
    # Bookings go through the pages (slot checks, e-mails, path transition): read-only here.
    readonly_fields = [f.name for f in Consultation._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(TreatmentCourse)
class TreatmentCourseAdmin(admin.ModelAdmin):
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
class GantrySessionAdmin(admin.ModelAdmin):
    list_display = ("start", "gantry_id", "course", "fraction_number", "status")
    list_filter = ("status", "gantry_id")
    date_hierarchy = "start"
    readonly_fields = [f.name for f in GantrySession._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(MachineDowntime)
class MachineDowntimeAdmin(admin.ModelAdmin):
    list_display = ("start", "end", "gantry_id", "reason")
    readonly_fields = ("recorded_by", "recorded_at")

    def has_add_permission(self, request):
        return False  # recorded from the agenda, which moves the sessions it hits
