"""Django admin classes whose changes land in the audit log like any other."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest

from mqttadmin.audit import audit_record, diff, snapshot


def _editable_fields(obj: models.Model) -> list[str]:
    return [
        f.attname if f.is_relation else f.name
        for f in obj._meta.concrete_fields
        if f.editable and not f.primary_key
    ]


class AuditedAdminMixin:
    """Records create/update/delete made in the admin, with secrets masked.

    `audit_secret_fields` names fields whose values never enter the log.
    The `# type: ignore[misc]` on super() calls: a mixin, its super() is the
    ModelAdmin it is mixed into, which mypy cannot see.
    """

    audit_secret_fields: tuple[str, ...] = ()

    def _before(self, obj: models.Model) -> dict[str, Any]:
        if not obj.pk:
            return {}
        stored = type(obj)._default_manager.filter(pk=obj.pk).first()
        return snapshot(stored, _editable_fields(obj)) if stored else {}

    def _record(
        self, request: HttpRequest, obj: models.Model, action: str, before: dict
    ) -> None:
        after = snapshot(obj, _editable_fields(obj)) if action != "delete" else {}
        changes = diff(before, after, self.audit_secret_fields)
        if action == "update" and not changes:
            return
        audit_record(
            actor=request.user,
            action=f"{obj._meta.model_name}.{action}",
            target=obj,
            changes=changes,
        )

    def save_model(
        self, request: HttpRequest, obj: Any, form: ModelForm, change: bool
    ) -> None:
        before = self._before(obj)
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        self._record(request, obj, "update" if change else "create", before)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self._record(request, obj, "delete", self._before(obj))
        super().delete_model(request, obj)  # type: ignore[misc]

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:
            self._record(request, obj, "delete", self._before(obj))
        super().delete_queryset(request, queryset)  # type: ignore[misc]

    def save_formset(
        self,
        request: HttpRequest,
        form: ModelForm,
        formset: BaseInlineFormSet,
        change: bool,
    ) -> None:
        befores = {id(f.instance): self._before(f.instance) for f in formset.forms}
        super().save_formset(request, form, formset, change)  # type: ignore[misc]
        for obj in formset.new_objects:
            self._record(request, obj, "create", {})
        for obj, _fields in formset.changed_objects:
            self._record(request, obj, "update", befores.get(id(obj), {}))
        for obj in formset.deleted_objects:
            audit_record(
                actor=request.user,
                action=f"{obj._meta.model_name}.delete",
                target=obj,
                changes=diff(befores.get(id(obj), {}), {}),
            )


class AuditedModelAdmin(AuditedAdminMixin, admin.ModelAdmin):
    pass
