from django.contrib import admin

from protonpath.accounts.admin_rules import RoleRulesAdmin
from protonpath.accounts.models import STAFF_ROLES
from protonpath.department.models import (
    AgendaItem,
    OpeningHours,
    ReviewMeeting,
    Service,
    TeamMember,
)
from protonpath.department.services import DIRECTORY_EDITORS, MEETING_ORGANISERS, MEETING_VIEWERS


@admin.register(TeamMember)
class TeamMemberAdmin(RoleRulesAdmin, admin.ModelAdmin):
    view_rule = STAFF_ROLES
    add_rule = change_rule = delete_rule = DIRECTORY_EDITORS
    list_display = ("display_order", "title", "name", "role", "user", "active")
    list_display_links = ("name",)
    list_editable = ("display_order", "active")
    list_filter = ("role", "active")
    search_fields = ("name",)
    raw_id_fields = ("user",)


class OpeningHoursInline(RoleRulesAdmin, admin.TabularInline):
    view_rule = STAFF_ROLES
    add_rule = change_rule = delete_rule = DIRECTORY_EDITORS
    model = OpeningHours
    extra = 0


@admin.register(Service)
class ServiceAdmin(RoleRulesAdmin, admin.ModelAdmin):
    view_rule = STAFF_ROLES
    add_rule = change_rule = delete_rule = DIRECTORY_EDITORS
    list_display = ("code", "name_en", "phone", "location_en")
    inlines = [OpeningHoursInline]


class AgendaItemInline(RoleRulesAdmin, admin.TabularInline):
    view_rule = MEETING_VIEWERS
    model = AgendaItem
    extra = 0
    raw_id_fields = ("treatment_request",)
    # Decisions move the request's path: they are recorded on the meeting page, not here.
    readonly_fields = (
        "treatment_request",
        "decision",
        "proposed_dose_gy",
        "proposed_fractions",
        "note",
        "recorded_by",
        "recorded_at",
        "added_by",
    )
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ReviewMeeting)
class ReviewMeetingAdmin(RoleRulesAdmin, admin.ModelAdmin):
    view_rule = MEETING_VIEWERS
    add_rule = change_rule = delete_rule = MEETING_ORGANISERS
    list_display = ("starts_at", "status", "chair", "location")
    list_filter = ("status",)
    date_hierarchy = "starts_at"
    readonly_fields = ("status", "held_at", "created_by", "created_at")
    filter_horizontal = ("attendees",)
    inlines = [AgendaItemInline]
