"""Device pages: tiles with sparklines, detail with charts and raw telemetry, the
command box, create/edit/delete, alert rules of a device and the CSV import.

Every view finds objects through `for_user` (outside the user's products: 404),
checks the role (operator for writes: 403), calls one service or selector and
renders. One view serves a page and the partial its HTMX poll asks for.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models.functions import Lower
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from alerts.models import Alert, AlertState, alert_key
from brokers.client import PublishError
from brokers.forms import apply_errors
from brokers.models import Broker
from devices import csv_import, selectors, services
from devices.choices import DeviceStatus
from devices.forms import (
    DEFAULT_RANGE,
    RANGES,
    AlertRuleForm,
    CommandForm,
    DeviceForm,
    ImportForm,
)
from devices.models import AlertRule, Device, DeviceImport
from devices.sparklines import line_chart_svg
from mqttadmin.http import PortalRequest, fragment_wanted, navigate, page_or_fragment
from mqttadmin.lib.times import parse_iso_time
from mqttadmin.listing import SortField, listing_from
from mqttadmin.models import Product
from mqttadmin.permissions import get_for_user_or_404, require_role
from mqttadmin.roles import Role

TILES_PER_PAGE = 48
RAW_ROWS = 50
# Offset paging walks the index from the newest point; past this many pages the
# API (which streams ranges) is the better tool, and the offset stays bounded.
RAW_PAGES = 200
# The ids of the detail page's live block and raw table: HTMX names them in
# HX-Target.
STATUS_TARGET = "device-live"
RAW_TARGET = "device-raw"


def _can_operate(user: Any, product: Product | None) -> bool:
    return product is not None and product.allows(user, Role.OPERATOR)


def _has_brokers(product: Product) -> bool:
    """A device lives on a broker: without one, the forms say so instead."""
    return Broker.objects.filter(product=product).exists()


def _current_product(request: PortalRequest, minimum: Role = Role.VIEWER) -> Product:
    product = getattr(request, "product", None)
    if product is None:
        raise Http404
    if minimum != Role.VIEWER:
        require_role(request.user, product, minimum)
    return product


def _int_param(request: PortalRequest, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() else None


DEVICE_COLUMNS: dict[str, tuple[SortField, ...]] = {
    "name": (Lower("name"), "device_id"),
    "id": ("device_id",),
    "type": (Lower("type"),),
    "status": ("status",),
    "last": ("last_seen_at",),
    "broker": (Lower("broker__name"),),
}


@login_required
def device_list(request: PortalRequest) -> HttpResponse:
    """The current product's devices as tiles, filtered, searched and sorted as
    asked; HTMX (the poll, the filters, the sort links, pages) gets the tiles."""
    product = getattr(request, "product", None)
    listing = listing_from(
        request,
        columns=DEVICE_COLUMNS,
        default="name",
        search=("name", "device_id", "type", "topic"),
        target="device-tiles",
        descending_first=("last",),
    )
    broker = _int_param(request, "broker")
    status = request.GET.get("status") or None
    if status not in (None, *selectors.STATUS_FILTERS):
        status = None
    devices = (
        selectors.devices_for(request.user, product, broker=broker, status=status)
        if product is not None
        else Device.objects.none()
    )
    page = Paginator(listing.apply(devices), TILES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "product": product,
        "listing": listing,
        "sort_links": [
            (listing.headers[key], label)
            for key, label in (
                ("name", _("Name")),
                ("id", _("Device ID")),
                ("type", _("Type")),
                ("status", _("Status")),
                ("last", _("Last seen")),
                ("broker", _("Broker")),
            )
        ],
        "page": page,
        "tiles": selectors.device_tiles(list(page.object_list)),
        "brokers": Broker.objects.filter(product=product).order_by("name")
        if product
        else [],
        "broker_filter": broker,
        "status_filter": status or "",
        "status_choices": [
            *DeviceStatus.choices,
            ("stale", _("Stale")),
        ],
        "can_operate": _can_operate(request.user, product),
        "query": request.GET.urlencode(),
    }
    return page_or_fragment(
        request,
        "devices/list.html",
        "devices/partials/tiles.html",
        context,
        target="device-tiles",
    )


# --- Detail -------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    key: str
    svg: SafeString
    last: Any


def _charts(device: Device, range_key: str, now: datetime.datetime) -> list[Chart]:
    _label, span, bucket = RANGES[range_key]
    query = selectors.SeriesQuery(
        since=now - datetime.timedelta(seconds=span), until=now, bucket=bucket
    )
    series = selectors.bucketed_series([device.pk], query).get(device.pk, {})
    last = dict(device.value_items)
    keys = sorted(set(series) | set(last))
    charts = []
    for key in keys:
        values = series.get(key)
        svg = (
            line_chart_svg(
                avg=values.avg,
                low=values.low,
                high=values.high,
                start=values.start,
                bucket=values.bucket,
                label=key,
            )
            if values is not None
            else line_chart_svg(
                avg=[None],
                low=[None],
                high=[None],
                start=query.since,
                bucket=span,
                label=key,
            )
        )
        charts.append(Chart(key, svg, last.get(key)))
    return charts


def _live_context(device: Device) -> dict[str, Any]:
    return {
        "device": device,
        "open_alerts": Alert.objects.filter(
            product_id=device.product_id,
            subject=device.device_id,
            state=AlertState.OPEN,
            rule_key__startswith=alert_key("rule", ""),
        ).order_by("-opened_at"),
    }


@dataclass(frozen=True)
class RawPage:
    """One page of raw points, newest first, and whether older ones follow."""

    points: list[Any]
    number: int
    has_next: bool

    @property
    def previous_number(self) -> int:
        return self.number - 1

    @property
    def next_number(self) -> int:
        return self.number + 1


def _raw_page(
    device: Device,
    range_key: str,
    key: str | None,
    page: str | None,
    until: datetime.datetime,
) -> RawPage:
    """Raw points of the range up to `until`, RAW_ROWS a page. One row more than a
    page is read to know whether another follows: no COUNT over a day of points."""
    number = int(page) if page and page.isdigit() else 1
    number = min(max(number, 1), RAW_PAGES)
    span = datetime.timedelta(seconds=RANGES[range_key][1])
    start = (number - 1) * RAW_ROWS
    rows = list(
        selectors.recent_points(
            device,
            selectors.SeriesQuery(since=until - span, until=until, key=key),
            start + RAW_ROWS + 1,
        )[start:]
    )
    return RawPage(rows[:RAW_ROWS], number, len(rows) > RAW_ROWS and number < RAW_PAGES)


@login_required
def device_detail(request: PortalRequest, pk: int) -> HttpResponse:
    """Status, the command box and alert rules, charts over a chosen range
    (?range=), then raw telemetry (?key=, ?page=); the HTMX poll gets the live
    block, the raw table's pager gets the raw table."""
    device = get_for_user_or_404(Device, request.user, pk=pk)
    if fragment_wanted(request, STATUS_TARGET):
        return render(request, "devices/partials/live.html", _live_context(device))
    range_key = request.GET.get("range", DEFAULT_RANGE)
    if range_key not in RANGES:
        range_key = DEFAULT_RANGE
    key = request.GET.get("key") or None
    # The pager's links pin the time the first page was read: points arriving
    # meanwhile do not shift later pages (a bad value is read as now).
    until = parse_iso_time(request.GET.get("until"), "until", {}) or timezone.now()
    pinned = {"range": range_key, "until": until.isoformat()}
    raw = {
        "device": device,
        "range": range_key,
        "key": key or "",
        "raw": _raw_page(device, range_key, key, request.GET.get("page"), until),
        # Escaped here; the template appends `page=`.
        "raw_query": urlencode({**pinned, **({"key": key} if key else {})}) + "&",
    }
    if fragment_wanted(request, RAW_TARGET):
        return render(request, "devices/partials/raw.html", raw)
    now = timezone.now()
    can_operate = _can_operate(request.user, device.product)
    context = {
        **_live_context(device),
        **raw,
        "can_operate": can_operate,
        "ranges": [(k, v[0]) for k, v in RANGES.items()],
        "charts": _charts(device, range_key, now),
        "rules": selectors.rules_of_device(device),
        "rule_form": AlertRuleForm() if can_operate else None,
        "command_form": CommandForm() if can_operate else None,
    }
    return render(request, "devices/detail.html", context)


# --- Create / edit / delete ---------------------------------------------------


def _detail_url(device: Device) -> str:
    return reverse("devices:detail", args=[device.pk])


def _saved(request: PortalRequest, device: Device, message: str) -> HttpResponse:
    messages.success(request, message)
    return navigate(request, _detail_url(device))


@login_required
def device_create(request: PortalRequest) -> HttpResponse:
    product = _current_product(request, Role.OPERATOR)
    form = DeviceForm(request.POST or None, product=product)
    if request.method == "POST" and form.is_valid():
        try:
            device = services.device_create(
                actor=request.user, product=product, **form.service_fields()
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            return _saved(request, device, _("Device %s created.") % device.name)
    return render(
        request,
        "devices/form.html",
        {
            "form": form,
            "product": product,
            "device": None,
            "has_brokers": _has_brokers(product),
        },
    )


@login_required
def device_edit(request: PortalRequest, pk: int) -> HttpResponse:
    device = get_for_user_or_404(Device, request.user, Role.OPERATOR, pk=pk)
    stored = Device.objects.get(pk=device.pk)  # the form writes onto its instance
    form = DeviceForm(request.POST or None, instance=device, product=device.product)
    if request.method == "POST" and form.is_valid():
        try:
            device = services.device_update(
                actor=request.user, device=stored, **form.service_fields()
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            return _saved(request, device, _("Device %s saved.") % device.name)
    return render(
        request,
        "devices/form.html",
        {
            "form": form,
            "product": device.product,
            "device": stored,
            "has_brokers": True,
        },
    )


@login_required
def device_delete(request: PortalRequest, pk: int) -> HttpResponse:
    device = get_for_user_or_404(Device, request.user, Role.OPERATOR, pk=pk)
    if request.method == "POST":
        name = device.name
        services.device_delete(actor=request.user, device=device)
        messages.success(request, _("Device %s deleted.") % name)
        return navigate(request, reverse("devices:list"))
    return render(request, "devices/confirm_delete.html", {"device": device})


# --- Command ------------------------------------------------------------------


@login_required
@require_POST
def device_command(request: PortalRequest, pk: int) -> HttpResponse:
    """Publish the command box's payload; HTMX gets the box back with the outcome."""
    device = get_for_user_or_404(Device, request.user, Role.OPERATOR, pk=pk)
    form = CommandForm(request.POST)
    notice = ""
    if form.is_valid():
        try:
            services.device_command(
                actor=request.user,
                device=device,
                payload=form.cleaned_data["payload"],
                qos=form.cleaned_data["qos"],
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        except PublishError as exc:
            form.add_error(None, _("Publishing failed: %s") % exc)
        else:
            notice = _("Sent to %s.") % device.command_topic
            form = CommandForm(initial={"qos": form.cleaned_data["qos"]})
    if fragment_wanted(request):
        return render(
            request,
            "devices/partials/command.html",
            {"device": device, "command_form": form, "notice": notice},
        )
    if notice:
        messages.success(request, notice)
    for errors in form.errors.values():
        messages.error(request, " ".join(str(error) for error in errors))
    return redirect(_detail_url(device))


# --- Alert rules of a device ----------------------------------------------------


def _rules_response(
    request: PortalRequest, device: Device, form: AlertRuleForm | None = None
) -> HttpResponse:
    if fragment_wanted(request):
        return render(
            request,
            "devices/partials/rules.html",
            {
                "device": device,
                "rules": selectors.rules_of_device(device),
                "rule_form": form or AlertRuleForm(),
                "can_operate": True,
            },
        )
    if form is not None:
        for errors in form.errors.values():
            messages.error(request, " ".join(str(error) for error in errors))
    return redirect(_detail_url(device))


@login_required
@require_POST
def rule_create(request: PortalRequest, pk: int) -> HttpResponse:
    device = get_for_user_or_404(Device, request.user, Role.OPERATOR, pk=pk)
    form: AlertRuleForm | None
    form = AlertRuleForm(request.POST)
    if form.is_valid():
        try:
            services.alert_rule_create(
                actor=request.user,
                product=device.product,
                device=device,
                **form.cleaned_data,
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            form = None
    return _rules_response(request, device, form)


@login_required
@require_POST
def rule_delete(request: PortalRequest, pk: int, rid: int) -> HttpResponse:
    device = get_for_user_or_404(Device, request.user, Role.OPERATOR, pk=pk)
    rule = get_for_user_or_404(AlertRule, request.user, Role.OPERATOR, pk=rid)
    if rule.product_id != device.product_id:
        raise Http404
    services.alert_rule_delete(actor=request.user, rule=rule)
    return _rules_response(request, device)


# --- CSV import ---------------------------------------------------------------


@login_required
def device_import(request: PortalRequest) -> HttpResponse:
    """Upload a CSV file; it is checked and imported in the background while the
    import page shows the progress."""
    product = _current_product(request, Role.OPERATOR)
    form = ImportForm(request.POST or None, request.FILES or None, product=product)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            text = csv_import.decode_csv(csv_import.read_capped(upload))
        except csv_import.ImportFailed as exc:
            form.add_error("file", exc.errors[0].reason)
        else:
            job = csv_import.import_start(
                actor=request.user,
                product=product,
                broker=form.cleaned_data["broker"],
                text=text,
                filename=upload.name or "",
            )
            # The progress page comes whole (see mqttadmin.http.fragment_wanted).
            return navigate(request, reverse("devices:import-detail", args=[job.pk]))
    return render(
        request,
        "devices/import.html",
        {
            "form": form,
            "product": product,
            "recent": _recent_imports(request),
            "has_brokers": _has_brokers(product),
        },
    )


def _recent_imports(request: PortalRequest) -> list[DeviceImport]:
    return list(
        DeviceImport.objects.for_user(request.user, Role.OPERATOR)
        .filter(product=request.product)
        .select_related("broker")
        .defer("text")[:10]
    )


@login_required
def import_detail(request: PortalRequest, pk: int) -> HttpResponse:
    """An import's progress; its HTMX poll gets the progress block until done."""
    job = get_for_user_or_404(DeviceImport, request.user, Role.OPERATOR, pk=pk)
    return page_or_fragment(
        request,
        "devices/import_detail.html",
        "devices/partials/import_progress.html",
        {"job": job},
        target="import-progress",
    )
