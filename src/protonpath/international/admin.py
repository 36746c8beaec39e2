"""Admin: the tariff may be extended (a new price is a new row); quotes and payments are read-only here."""

from __future__ import annotations

from django.contrib import admin

from protonpath.accounts import audit
from protonpath.accounts.admin_rules import RoleRulesAdmin
from protonpath.accounts.models import STAFF_ROLES, AuditEvent
from protonpath.international import selectors
from protonpath.international.models import (
    AccompanyingPerson,
    DeclaredStay,
    Payment,
    Quote,
    QuoteLine,
    StayCostLine,
    Tariff,
)


def _manages(user, obj=None) -> bool:
    return selectors.may_manage(user)


def _manages_unused_tariff(user, tariff=None) -> bool:
    """A price no quote uses yet may be corrected or removed, by those who manage tariffs."""
    return selectors.may_manage(user) and (tariff is None or not tariff.is_used)


class ReadOnlyAdmin(RoleRulesAdmin, admin.ModelAdmin):
    """Quotes, payments and travellers change through the pages only; staff who see the request
    see them here."""

    view_rule = STAFF_ROLES
    request_field = "treatment_request"


@admin.register(Tariff)
class TariffAdmin(RoleRulesAdmin, admin.ModelAdmin):
    list_display = ("code", "label_en", "unit_price_eur", "valid_from", "illustrative")
    list_filter = ("code", "illustrative")
    ordering = ("code", "-valid_from")
    # As the tariff page: every staff member reads it, administrative staff and the head price.
    view_rule = STAFF_ROLES
    add_rule = staticmethod(_manages)
    change_rule = delete_rule = staticmethod(_manages_unused_tariff)

    def save_model(self, request, obj, form, change):
        obj.created_by = obj.created_by or request.user
        super().save_model(request, obj, form, change)
        audit.record(actor=request.user, action=AuditEvent.Action.UPDATE if change else AuditEvent.Action.CREATE, obj=obj, summary="admin")


class QuoteLineInline(RoleRulesAdmin, admin.TabularInline):
    view_rule = STAFF_ROLES
    model = QuoteLine
    extra = 0
    can_delete = False
    readonly_fields = ("position", "code", "label_en", "quantity", "unit_price_eur", "total_eur")
    fields = readonly_fields

    def has_add_permission(self, request, obj=None):
        return False


class StayCostLineInline(QuoteLineInline):
    model = StayCostLine
    readonly_fields = ("position", "code", "label_en", "persons", "quantity", "unit_price_eur", "total_eur")
    fields = readonly_fields


@admin.register(Quote)
class QuoteAdmin(ReadOnlyAdmin):
    list_display = ("number", "treatment_request", "status", "total_eur", "issued_at")
    list_filter = ("status",)
    inlines = [QuoteLineInline, StayCostLineInline]

    def has_view_permission(self, request, obj=None):
        if obj is not None:
            audit.record(actor=request.user, action=AuditEvent.Action.VIEW, obj=obj, summary="admin")
        return super().has_view_permission(request, obj)


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    request_field = "quote__treatment_request"
    list_display = ("quote", "kind", "amount_eur", "paid_on", "method", "reference")
    list_filter = ("kind", "method")


@admin.register(AccompanyingPerson)
class AccompanyingPersonAdmin(ReadOnlyAdmin):
    list_display = ("treatment_request", "nationality", "relationship_kind", "relationship")


@admin.register(DeclaredStay)
class DeclaredStayAdmin(ReadOnlyAdmin):
    list_display = ("treatment_request", "companion", "entry_on", "exit_on")
