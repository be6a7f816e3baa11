"""The Django admin's one permission rule, shared by every app's admin.

Django's model permissions say what a staff user may do to a kind of object; they
know nothing of products. `ProductScopedAdmin` adds the product: a staff user who is
not a superuser sees and changes only objects in the products where they hold the
admin role, and no form lets them move an object into another product. Settings
that act on the portal's own host (files it writes, commands it runs) and actions
that use them are for superusers only (`host_fields`, `has_host_permission`).

`PortalAdminSite` keeps it that way for admins nobody here wrote (users, groups,
Celery beat's periodic tasks, django-axes, ...): any model admin that is not
product-scoped is for superusers only, whatever model permissions a user holds.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils.translation import gettext as _

from mqttadmin.admin_audit import AuditedAdminMixin
from mqttadmin.models import Product
from mqttadmin.roles import Role, roles_at_least

# The role a staff user needs in a product to reach its objects in the admin. The
# admin edits whatever its model permissions allow, so nothing below admin fits.
ADMIN_ROLE = Role.ADMIN


def _is_superuser(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and user.is_superuser)


def _product_path(model: type[models.Model], override: str | None = None) -> str | None:
    """The lookup path from `model` to its product ("" for Product itself), or
    None when the model belongs to no product."""
    if override is not None:
        return override
    if issubclass(model, Product):
        return ""
    queryset = model._default_manager.get_queryset()
    path = getattr(queryset, "product_path", None)
    return path if isinstance(path, str) else None


def _is_relation(model: type[models.Model], lookup: str) -> bool:
    fields = get_fields_from_path(model, lookup)
    return bool(fields and fields[-1].is_relation)


def _in_administered_products(path: str, user: Any) -> Q:
    prefix = f"{path}__" if path else ""
    # One filter() call so both conditions apply to the same membership row.
    return Q(
        **{
            f"{prefix}memberships__user": user,
            f"{prefix}memberships__role__in": roles_at_least(ADMIN_ROLE),
        }
    )


def _product_of(obj: models.Model, path: str) -> Product | None:
    target: Any = obj
    for part in [p for p in path.split("__") if p]:
        target = getattr(target, part, None)
        if target is None:
            return None
    return target if isinstance(target, Product) else None


def administered_choices(
    model: type[models.Model], request: HttpRequest
) -> QuerySet | None:
    """The `model` rows a non-superuser may pick in a form: those in products they
    administer. None when the model belongs to no product (no narrowing)."""
    path = _product_path(model)
    if path is None:
        return None
    return model._default_manager.filter(
        _in_administered_products(path, request.user)
    ).distinct()


class ProductScopedMixin:
    """Querysets, choices and saves narrowed to the staff user's products.

    `product_path` names the way from the model to its product when its queryset
    does not (`ProductScopedQuerySet.product_path`)."""

    # The `# type: ignore[misc]` on super() calls below: a mixin, its super() is the
    # ModelAdmin or InlineModelAdmin it is mixed into, which mypy cannot see.
    product_path: str | None = None
    # Fields that act on the portal's host: read-only for everybody else.
    host_fields: tuple[str, ...] = ()

    model: type[models.Model]

    def _path(self) -> str:
        path = _product_path(self.model, self.product_path)
        if path is None:
            raise TypeError(
                f"{type(self).__name__}: {self.model.__name__} has no product_path"
            )
        return path

    def administers(self, request: HttpRequest, obj: models.Model | None) -> bool:
        """True when the user may change `obj` (None: objects of this kind)."""
        if _is_superuser(request):
            return True
        if obj is None:
            return Product.objects.filter(
                _in_administered_products("", request.user)
            ).exists()
        product = _product_of(obj, self._path())
        return product is not None and product.allows(request.user, ADMIN_ROLE)

    def has_host_permission(self, request: HttpRequest) -> bool:
        """Actions and fields that act on the portal's own host."""
        return _is_superuser(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        if _is_superuser(request):
            return queryset
        return queryset.filter(_in_administered_products(self._path(), request.user))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) and self.administers(  # type: ignore[misc]
            request, None
        )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) and (  # type: ignore[misc]
            obj is None or self.administers(request, obj)
        )

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return super().has_add_permission(request, *args) and self.administers(  # type: ignore[misc]
            request, None
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and self.administers(  # type: ignore[misc]
            request, obj
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and self.administers(  # type: ignore[misc]
            request, obj
        )

    def get_list_filter(self, request: HttpRequest) -> Any:
        filters = list(super().get_list_filter(request))  # type: ignore[misc]
        if _is_superuser(request):
            return filters
        # A related filter lists every row of the related model (other products'
        # names): offer only the values found in the user's own rows.
        return [
            (item, admin.RelatedOnlyFieldListFilter)
            if isinstance(item, str) and _is_relation(self.model, item)
            else item
            for item in filters
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        if not self.has_host_permission(request):
            fields += [name for name in self.host_fields if name not in fields]
        return fields

    def formfield_for_foreignkey(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> Any:
        if "queryset" not in kwargs and not _is_superuser(request):
            choices = administered_choices(db_field.remote_field.model, request)
            if choices is not None:
                kwargs["queryset"] = choices
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def formfield_for_manytomany(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> Any:
        if "queryset" not in kwargs and not _is_superuser(request):
            choices = administered_choices(db_field.remote_field.model, request)
            if choices is not None:
                kwargs["queryset"] = choices
        return super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]

    def _require_administered(self, request: HttpRequest, obj: models.Model) -> None:
        # The form's choices already refuse other products; this catches any path
        # they do not cover (a nested product, a custom form).
        if not self.administers(request, obj):
            raise PermissionDenied(
                _("You do not administer the product of %(object)s.") % {"object": obj}
            )


class ProductScopedInline(ProductScopedMixin):
    """An inline of a product-scoped admin. Django asks an inline about the parent
    object; its rows belong to the parent's product through their foreign key,
    which the inline's form does not offer."""

    def administers(self, request: HttpRequest, obj: models.Model | None) -> bool:
        if obj is None or _is_superuser(request):
            return super().administers(request, obj)
        path = _product_path(type(obj))
        product = _product_of(obj, path) if path is not None else None
        return product is not None and product.allows(request.user, ADMIN_ROLE)


class ProductScopedAdmin(ProductScopedMixin, AuditedAdminMixin, admin.ModelAdmin):
    """The base of every model admin here: audited, and scoped to the products the
    staff user administers (superusers: all)."""

    def save_model(
        self, request: HttpRequest, obj: Any, form: ModelForm, change: bool
    ) -> None:
        self._require_administered(request, obj)
        super().save_model(request, obj, form, change)


class ReadOnlyScopedAdmin(ProductScopedAdmin):
    """Rows written by the portal itself: looked at, never edited by hand."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SuperuserOnlyMixin:
    """For admins that know nothing of products: superusers only.

    The `# type: ignore[misc]` on super() calls: a mixin, its super() is the
    ModelAdmin it is mixed into, which mypy cannot see."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _is_superuser(request) and super().has_module_permission(request)  # type: ignore[misc]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_superuser(request) and super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return _is_superuser(request) and super().has_add_permission(request, *args)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_superuser(request) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_superuser(request) and super().has_delete_permission(request, obj)  # type: ignore[misc]


class PortalAdminSite(admin.AdminSite):
    """The admin site: model admins that are not product-scoped become
    superuser-only as they are registered, so a third-party app's admin (or a new
    one that forgot the base class) never opens a way around the products."""

    def register(
        self,
        model_or_iterable: Any,
        admin_class: type[admin.ModelAdmin] | None = None,
        **options: Any,
    ) -> None:
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, ProductScopedMixin | SuperuserOnlyMixin):
            admin_class = type(
                admin_class.__name__,
                (SuperuserOnlyMixin, admin_class),
                {"__module__": admin_class.__module__},
            )
        super().register(model_or_iterable, admin_class, **options)
