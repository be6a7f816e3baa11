"""Admin for products, memberships and the (read-only) audit log."""

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest, HttpResponse

from mqttadmin.admin_audit import AuditedAdminMixin
from mqttadmin.admin_base import (
    ProductScopedAdmin,
    ProductScopedInline,
    ReadOnlyScopedAdmin,
)
from mqttadmin.models import AuditEntry, Membership, Product


class MembershipInline(ProductScopedInline, admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Product)
class ProductAdmin(ProductScopedAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    # Products are created and removed by superusers, as on the pages.
    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return request.user.is_superuser and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser and super().has_delete_permission(request, obj)


@admin.register(Membership)
class MembershipAdmin(ProductScopedAdmin):
    list_display = ["user", "product", "role", "created_at"]
    list_filter = ["role", "product"]
    search_fields = ["user__username", "product__name"]
    autocomplete_fields = ["user", "product"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyScopedAdmin):
    list_display = [
        "created_at",
        "actor_name",
        "source",
        "action",
        "product",
        "target_repr",
    ]
    list_filter = ["source", "product", "action"]
    search_fields = ["actor_name", "action", "target_repr"]
    date_hierarchy = "created_at"
    # The log is evidence: nobody edits or deletes it from the admin (read-only);
    # entries without a product are for superusers (the scoped queryset drops them).


# Users are changed in the admin too; their changes are audited like the rest. The
# admin site makes this admin superuser-only: a staff user who could change users
# could make themselves superuser.
User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class AuditedUserAdmin(AuditedAdminMixin, UserAdmin):
    audit_secret_fields = ("password",)

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        # The password form saves without save_model: record the change here.
        user = self.get_object(request, id)
        before = self._before(user) if user else {}
        response = super().user_change_password(request, id, form_url)
        if user and request.method == "POST" and response.status_code == 302:
            user.refresh_from_db()
            self._record(request, user, "update", before)
        return response
