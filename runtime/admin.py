"""Runtime leases in the admin: written by the runtime, only looked at."""

from __future__ import annotations

from django.contrib import admin

from brokers.admin import ReadOnlyAdmin
from runtime.models import RuntimeLease


@admin.register(RuntimeLease)
class RuntimeLeaseAdmin(ReadOnlyAdmin):
    list_display = ["broker", "owner", "acquired_at", "expires_at"]
    search_fields = ["broker__name", "owner"]
    list_select_related = ["broker"]
