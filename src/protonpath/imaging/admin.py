from django.contrib import admin

from protonpath.imaging.models import CheckReport, Instance, Series, Study, Transfer


class ReadOnlyAdmin(admin.ModelAdmin):
    """The index is written by uploads and the DICOM receiver only."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Study)
class StudyAdmin(ReadOnlyAdmin):
    list_display = ("id", "treatment_request", "study_date", "modalities", "accession_number", "created_at")
    list_filter = ("modalities",)
    search_fields = ("accession_number", "treatment_request__reference")


@admin.register(Series)
class SeriesAdmin(ReadOnlyAdmin):
    list_display = ("id", "study", "modality", "description", "instance_count")


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdmin):
    list_display = ("id", "series", "instance_number", "received_via", "calling_ae_title", "received_at")
    exclude = ("header",)


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = ("id", "via", "calling_ae_title", "stored", "duplicates", "refused", "outcome", "started_at")


@admin.register(CheckReport)
class CheckReportAdmin(ReadOnlyAdmin):
    list_display = ("treatment_request", "fit_for_planning", "modalities", "instance_count", "created_at")
