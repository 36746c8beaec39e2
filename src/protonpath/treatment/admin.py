from django.contrib import admin

from protonpath.treatment.models import Plan, Prescription


@admin.register(Prescription)
class PrescriptionAdmin(admin.ModelAdmin):
    list_display = ("treatment_request", "version", "target", "dose_gy", "fractions", "created_at")
    readonly_fields = [f.name for f in Prescription._meta.fields]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("treatment_request", "version", "state", "stage", "progress", "created_at")
    list_filter = ("state",)
    readonly_fields = [f.name for f in Plan._meta.fields]

    def has_delete_permission(self, request, obj=None):
        return False
