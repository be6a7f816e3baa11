"""Foundation pages: health check, products and members, product switcher, audit."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connection
from django.db.models.functions import Lower
from django.db.utils import DatabaseError
from django.forms import BaseForm
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from mqttadmin import services
from mqttadmin.forms import (
    MemberAddForm,
    MemberCreateForm,
    MemberRoleForm,
    ProductForm,
)
from mqttadmin.health import extra_checks
from mqttadmin.http import PortalRequest, page_or_fragment
from mqttadmin.listing import SortField, listing_from
from mqttadmin.middleware import SESSION_PRODUCT_KEY
from mqttadmin.models import AuditEntry, Membership, Product
from mqttadmin.permissions import get_for_user_or_404, require_role
from mqttadmin.roles import Role


def _form_errors(form_or_error: ValidationError, form: BaseForm) -> None:
    for field, errors in form_or_error.message_dict.items():
        form.add_error(field if field in form.fields else None, errors)


@never_cache
@require_GET
def healthz(request: PortalRequest) -> JsonResponse:
    """200 when every part answers; 503 naming the part that does not."""
    parts: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        parts["database"] = "ok"
    except DatabaseError as exc:
        parts["database"] = f"error: {exc.__class__.__name__}"
    parts.update(extra_checks())
    failing = [name for name, state in parts.items() if state != "ok"]
    body: dict[str, Any] = {"status": "error" if failing else "ok", **parts}
    if failing:
        body["failing"] = failing
    return JsonResponse(body, status=503 if failing else 200)


@login_required
def product_list(request: PortalRequest) -> HttpResponse:
    products = Product.objects.for_user(request.user).order_by("name")
    form = ProductForm(request.POST or None) if request.user.is_superuser else None
    if request.method == "POST":
        if form is None:
            raise PermissionDenied(_("Only superusers create products."))
        if form.is_valid():
            try:
                product = services.product_create(
                    actor=request.user, **form.cleaned_data
                )
            except ValidationError as exc:
                _form_errors(exc, form)
            else:
                messages.success(request, _("Product %s created.") % product.name)
                return redirect("product-detail", pk=product.pk)
    return render(
        request, "mqttadmin/product_list.html", {"products": products, "form": form}
    )


@login_required
def product_detail(request: PortalRequest, pk: int) -> HttpResponse:
    """A product and its members; admins add existing users, create new ones,
    change roles and remove members here.

    A created user's one-time password or invite link is in this response only
    (not in a message that would travel through the session)."""
    product = get_for_user_or_404(Product, request.user, pk=pk)
    is_admin = product.allows(request.user, Role.ADMIN)
    creating = request.method == "POST" and "new-username" in request.POST
    add_form: MemberAddForm | None = None
    create_form: MemberCreateForm | None = None
    new_member: services.NewMember | None = None
    if is_admin:
        add_form = MemberAddForm(
            request.POST if request.method == "POST" and not creating else None
        )
        create_form = MemberCreateForm(request.POST if creating else None, prefix="new")
    if request.method == "POST":
        require_role(request.user, product, Role.ADMIN)
        if creating and create_form is not None and create_form.is_valid():
            try:
                new_member = services.member_create(
                    actor=request.user, product=product, **create_form.cleaned_data
                )
            except ValidationError as exc:
                _form_errors(exc, create_form)
            else:
                messages.success(
                    request,
                    _("User %s created and added.")
                    % new_member.membership.user.get_username(),
                )
                create_form = MemberCreateForm(prefix="new")
        elif not creating and add_form is not None and add_form.is_valid():
            try:
                services.membership_add(
                    actor=request.user, product=product, **add_form.cleaned_data
                )
            except ValidationError as exc:
                _form_errors(exc, add_form)
            else:
                messages.success(request, _("Member added."))
                add_form = MemberAddForm()
    context = {
        "product": product,
        "is_admin": is_admin,
        "memberships": product.memberships.select_related("user")
        if is_admin
        else Membership.objects.none(),
        "add_form": add_form,
        "create_form": create_form,
        "new_member": new_member,
        "invite_url": request.build_absolute_uri(new_member.invite_path)
        if new_member and new_member.invite_path
        else "",
        "roles": Role.choices,
    }
    response = page_or_fragment(
        request,
        "mqttadmin/product_detail.html",
        "mqttadmin/partials/members.html",
        context,
    )
    if new_member is not None:
        # The credential is shown once: no copy in any cache, nor in history.
        response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def member_update(request: PortalRequest, pk: int, user_id: int) -> HttpResponse:
    product = get_for_user_or_404(Product, request.user, Role.ADMIN, pk=pk)
    membership = get_object_or_404(Membership, product=product, user_id=user_id)
    try:
        if request.POST.get("remove"):
            services.membership_remove(actor=request.user, membership=membership)
        else:
            form = MemberRoleForm(request.POST)
            if not form.is_valid():
                raise ValidationError(form.errors)
            services.membership_change_role(
                actor=request.user,
                membership=membership,
                role=form.cleaned_data["role"],
            )
    except ValidationError as exc:
        for error in exc.messages:
            messages.error(request, error)
    return redirect("product-detail", pk=product.pk)


@login_required
@require_POST
def product_switch(request: PortalRequest) -> HttpResponse:
    product = get_for_user_or_404(Product, request.user, pk=request.POST.get("product"))
    request.session[SESSION_PRODUCT_KEY] = product.pk
    target = request.POST.get("next") or "/"
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = "/"
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return redirect(target)


AUDIT_COLUMNS: dict[str, tuple[SortField, ...]] = {
    "when": ("created_at",),
    "who": (Lower("actor_name"),),
    "via": ("source",),
    "action": ("action",),
    "target": (Lower("target_repr"),),
}


@login_required
def audit_list(request: PortalRequest) -> HttpResponse:
    """The audit log of products the user administers; filter by product and
    action, search and sort; HTMX (filters, search, headers, pages) gets the table."""
    listing = listing_from(
        request,
        columns=AUDIT_COLUMNS,
        default="-when",
        search=("actor_name", "action", "target_repr"),
        target="audit-table",
        descending_first=("when",),
    )
    entries = AuditEntry.objects.for_user(request.user).select_related("product")
    product_id = request.GET.get("product")
    if product_id and product_id.isdigit():
        entries = entries.filter(product_id=product_id)
    action = request.GET.get("action", "").strip()
    if action:
        entries = entries.filter(action__startswith=action)
    page = Paginator(listing.apply(entries), 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "listing": listing,
        "products": Product.objects.for_user(request.user, Role.ADMIN),
        "selected_product": product_id,
        "action": action,
    }
    return page_or_fragment(
        request, "mqttadmin/audit.html", "mqttadmin/partials/audit_table.html", context
    )
