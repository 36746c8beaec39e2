from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group

from protonpath.accounts.admin_rules import ACCOUNT_MANAGERS, AUDIT_VIEWERS, RoleRulesAdmin
from protonpath.accounts.forms import AdminSignInForm
from protonpath.accounts.models import ApiToken, AuditEvent, User

# The admin's sign-in page is throttled like the site's.
admin.site.login_form = AdminSignInForm


@admin.register(User)
class UserAdmin(RoleRulesAdmin, BaseUserAdmin):
    view_rule = add_rule = change_rule = delete_rule = ACCOUNT_MANAGERS
    list_display = ("username", "first_name", "last_name", "role", "is_active")
    list_filter = ("role", "is_active")
    fieldsets = BaseUserAdmin.fieldsets + (
        ("protonpath", {"fields": ("role", "phone", "institution", "specialty", "preferred_language")}),
    )
    add_fieldsets = BaseUserAdmin.add_fieldsets + (("protonpath", {"fields": ("role", "email")}),)


@admin.register(AuditEvent)
class AuditEventAdmin(RoleRulesAdmin, admin.ModelAdmin):
    view_rule = AUDIT_VIEWERS
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
class ApiTokenAdmin(RoleRulesAdmin, admin.ModelAdmin):
    view_rule = add_rule = change_rule = delete_rule = ACCOUNT_MANAGERS
    list_display = ("name", "user", "created_at", "last_used_at", "revoked")
    readonly_fields = ("digest", "created_at", "last_used_at")


# Groups are not used: every account has exactly one role, and the roles decide.
if admin.site.is_registered(Group):
    admin.site.unregister(Group)


def _under_role_rules(model, rules: dict) -> None:
    """Register a third-party model's admin again, under the role rules."""
    if not admin.site.is_registered(model):
        return
    base = type(admin.site.get_model_admin(model))
    admin.site.unregister(model)
    admin.site.register(model, type(base.__name__, (RoleRulesAdmin, base), rules))


try:
    from django_tasks_db.models import DBTaskResult
except ImportError:  # pragma: no cover - the task database is optional
    DBTaskResult = None
if DBTaskResult is not None:
    # Task results carry the ids the tasks were called with: the department's office reads them.
    _under_role_rules(DBTaskResult, {"view_rule": ACCOUNT_MANAGERS})
