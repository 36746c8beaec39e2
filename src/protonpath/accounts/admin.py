from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from protonpath.accounts.forms import AdminSignInForm
from protonpath.accounts.models import ApiToken, AuditEvent, User

# The admin's sign-in page is throttled like the site's.
admin.site.login_form = AdminSignInForm


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "first_name", "last_name", "role", "is_active")
    list_filter = ("role", "is_active")
    fieldsets = BaseUserAdmin.fieldsets + (
        ("protonpath", {"fields": ("role", "phone", "institution", "specialty", "preferred_language")}),
    )
    add_fieldsets = BaseUserAdmin.add_fieldsets + (("protonpath", {"fields": ("role", "email")}),)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("at", "actor", "actor_role", "action", "object_type", "object_id", "from_state", "to_state", "via")
    list_filter = ("action", "actor_role", "via")
    search_fields = ("object_id", "treatment_request_id")
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "created_at", "last_used_at", "revoked")
    readonly_fields = ("digest", "created_at", "last_used_at")
