from django.contrib import admin

from protonpath.accounts.admin_rules import RoleRulesAdmin
from protonpath.imaging import selectors
from protonpath.imaging.models import CheckReport, Instance, Series, Study, Transfer


class ReadOnlyAdmin(RoleRulesAdmin, admin.ModelAdmin):
    """The index is written by uploads and the DICOM receiver only; seen by those who see images
    on the pages (staff), for the requests they see, and the inbox of unmatched studies."""

    view_rule = staticmethod(lambda user, obj=None: selectors.may_view_images(user))
    add_rule = change_rule = delete_rule = None
    request_field = "treatment_request"
    rows_without_request = True


@admin.register(Study)
class StudyAdmin(ReadOnlyAdmin):
    list_display = ("id", "treatment_request", "study_date", "modalities", "accession_number", "created_at")
    list_filter = ("modalities",)
    search_fields = ("accession_number", "treatment_request__reference")


@admin.register(Series)
class SeriesAdmin(ReadOnlyAdmin):
    request_field = "study__treatment_request"
    list_display = ("id", "study", "modality", "description", "instance_count")


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdmin):
    request_field = "series__study__treatment_request"
    list_display = ("id", "series", "instance_number", "received_via", "calling_ae_title", "received_at")
    exclude = ("header",)


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    request_field = None  # a transfer names its sender, not a request
    list_display = ("id", "via", "calling_ae_title", "stored", "duplicates", "refused", "outcome", "started_at")


@admin.register(CheckReport)
class CheckReportAdmin(ReadOnlyAdmin):
    list_display = ("treatment_request", "fit_for_planning", "modalities", "instance_count", "created_at")
