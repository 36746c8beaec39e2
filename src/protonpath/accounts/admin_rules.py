"""The Django admin under the same role rules as the pages.

Django's own permissions (``is_superuser``, model permissions) say what an account *could* do in
the admin; the department's roles say what its holder may do at all. Every admin class of the
project mixes in :class:`RoleRulesAdmin` and names, per action, the app's own rule (a set of
roles or a function of the user and the object). Both must agree: a superuser physicist still
may not change a tariff, since the tariff page refuses physicists.

Rows follow the pages' rules too: where the model belongs to a request (``request_field``), the
admin lists only the rows of the requests the user sees on the site.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from django.contrib import admin
from django.db.models import Q

from protonpath.accounts.models import Role

Rule = Callable[..., bool] | Collection[str] | None

#: The audit trail: the head of department and administrative staff (as the activity page).
AUDIT_VIEWERS = frozenset({Role.ADMIN_STAFF, Role.HEAD})
#: Accounts and API tokens: administrative staff.
ACCOUNT_MANAGERS = frozenset({Role.ADMIN_STAFF})


def allows(rule: Rule, user, obj=None) -> bool:
    """Whether ``rule`` lets ``user`` act (on ``obj``): ``None`` allows nobody."""
    if not getattr(user, "is_authenticated", False) or not user.is_active or not user.is_department_staff:
        return False
    if rule is None:
        return False
    if callable(rule):
        return bool(rule(user, obj))
    return user.role in rule


class RoleRulesAdmin:
    """Mix into a ModelAdmin or an inline, before it: ``class X(RoleRulesAdmin, admin.ModelAdmin)``.

    ``view_rule``, ``add_rule``, ``change_rule``, ``delete_rule``: a set of roles, a function
    ``(user, obj) -> bool`` or ``None`` (nobody). ``change_rule`` also gives view; unset rules
    take ``None``. ``request_field``: the lookup from the model to its request for treatment
    (``"treatment_request"``, ``"study__treatment_request"``; ``"pk"`` for the request itself).
    """

    view_rule: Rule = None
    add_rule: Rule = None
    change_rule: Rule = None
    delete_rule: Rule = None
    request_field: str | None = None
    #: Rows without a request (the imaging inbox) are shown to those who may view.
    rows_without_request: bool = False

    def has_module_permission(self, request):
        return allows(self.view_rule, request.user) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return (
            allows(self.view_rule, request.user, obj) or allows(self.change_rule, request.user, obj)
        ) and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args):
        return allows(self.add_rule, request.user) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return allows(self.change_rule, request.user, obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return allows(self.delete_rule, request.user, obj) and super().has_delete_permission(request, obj)

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if self.request_field is None:
            return qs
        from protonpath.referrals.selectors import visible_requests

        visible = visible_requests(request.user).values("pk")
        condition = Q(**{f"{self.request_field}__in": visible})
        if self.rows_without_request:
            condition |= Q(**{f"{self.request_field}__isnull": True})
        return qs.filter(condition).distinct() if "__" in self.request_field else qs.filter(condition)


class ReadOnlyRoleAdmin(RoleRulesAdmin, admin.ModelAdmin):
    """Seen in the admin by those the rules let view; written only by the pages."""
