"""CSV import of devices: every row is checked first; any bad row and nothing is
imported.

The header names the columns: device_id, name, type, topic and optionally
availability_topic, in any order. Line numbers in errors are the file's lines (the
header is line 1). A valid file is created in one transaction with bulk inserts
(devices and their managed subscriptions) and one audit entry, so thousands of rows
take seconds and never leave half an import behind.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from brokers.models import Broker, Subscription
from devices.choices import ImportState
from devices.models import Device, DeviceImport
from devices.services import managed_subscriptions
from mqttadmin.audit import audit_record
from mqttadmin.background import enqueue_on_commit
from mqttadmin.models import Product
from mqttadmin.realtime import runtime_nudge

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("device_id", "name", "type", "topic")
OPTIONAL_COLUMNS = ("availability_topic",)
DERIVED_FIELDS = ("telemetry_topic", "command_topic")
MAX_ROWS = 50_000
# Lines read, blank ones included: a file of blank lines costs as much to read.
MAX_LINES = 2 * MAX_ROWS
MAX_REPORTED_ERRORS = 200
PROGRESS_EVERY = 500
BULK_SIZE = 500
AUDITED_IDS = 1000


@dataclass(frozen=True)
class ImportRow:
    line: int
    device_id: str
    name: str
    type: str
    topic: str
    availability_topic: str = ""


@dataclass(frozen=True)
class RowError:
    line: int
    device_id: str
    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImportFailed(Exception):
    """The file has errors; nothing was imported."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"{len(errors)} errors")
        self.errors = errors


def read_capped(upload: Any, field: str = "file") -> bytes:
    """An uploaded file or request body, read only up to the size limit
    (MQTTADMIN_DEVICE_IMPORT_MAX_BYTES); a larger one is refused by `field`."""
    limit = settings.MQTTADMIN_DEVICE_IMPORT_MAX_BYTES
    size = getattr(upload, "size", None)
    data = b"" if size is not None and size > limit else upload.read(limit + 1)
    if (size is not None and size > limit) or len(data) > limit:
        raise ImportFailed(
            [
                RowError(
                    1,
                    "",
                    field,
                    _(
                        "The file is larger than %(limit)d bytes "
                        "(at most %(rows)d rows)."
                    )
                    % {"limit": limit, "rows": MAX_ROWS},
                )
            ]
        )
    return data


def decode_csv(data: bytes) -> str:
    """The text of an uploaded file (UTF-8, with or without a byte order mark)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFailed(
            [
                RowError(
                    1,
                    "",
                    "file",
                    _("The file is not UTF-8 text (byte %d).") % exc.start,
                )
            ]
        ) from None


def parse_csv(text: str) -> tuple[list[ImportRow], list[RowError]]:
    """Rows and format errors (bad header, wrong number of columns)."""
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[ImportRow] = []
    errors: list[RowError] = []
    columns: list[str] | None = None
    read = 0  # physical lines read so far: a quoted cell may span several
    try:
        for record in reader:
            start, read = read + 1, reader.line_num
            if read > MAX_LINES:
                errors.append(
                    RowError(
                        start, "", "file", _("At most %d lines per file.") % MAX_LINES
                    )
                )
                return [], errors
            if not any(cell.strip() for cell in record):
                continue
            if columns is None:
                columns = [cell.strip().lower() for cell in record]
                errors.extend(_header_errors(columns, start))
                if errors:
                    return [], errors
                continue
            if len(record) != len(columns):
                errors.append(
                    RowError(
                        start,
                        record[0].strip() if record else "",
                        "row",
                        _("Expected %(expected)d columns, found %(found)d.")
                        % {"expected": len(columns), "found": len(record)},
                    )
                )
                continue
            values = {
                name: cell.strip() for name, cell in zip(columns, record, strict=True)
            }
            rows.append(ImportRow(line=start, **values))
            if len(rows) > MAX_ROWS:
                errors.append(
                    RowError(
                        start,
                        "",
                        "file",
                        _("At most %d devices per file.") % MAX_ROWS,
                    )
                )
                return [], errors
    except csv.Error as exc:
        errors.append(RowError(read + 1, "", "file", _("Not valid CSV: %s") % exc))
    if columns is None:
        errors.append(RowError(1, "", "file", _("The file is empty.")))
    return rows, errors


def _header_errors(columns: list[str], line: int) -> list[RowError]:
    known = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    unknown = [name for name in columns if name not in known]
    doubled = sorted({name for name in columns if columns.count(name) > 1})
    reasons = []
    if missing:
        reasons.append(_("missing columns: %s") % ", ".join(missing))
    if unknown:
        reasons.append(_("unknown columns: %s") % ", ".join(unknown))
    if doubled:
        reasons.append(_("columns named twice: %s") % ", ".join(doubled))
    if not reasons:
        return []
    expected = ",".join(REQUIRED_COLUMNS) + "[," + ",".join(OPTIONAL_COLUMNS) + "]"
    reason = "; ".join(reasons) + " " + _("(expected %s)") % expected
    return [RowError(line, "", "header", reason.capitalize())]


def _device_for(row: ImportRow, product: Product, broker: Broker) -> Device:
    device = Device(
        product=product,
        broker=broker,
        device_id=row.device_id,
        name=row.name,
        type=row.type,
        topic=row.topic,
        availability_topic=row.availability_topic,
    )
    device.apply_topic_defaults()
    return device


def validate_rows(
    rows: list[ImportRow],
    product: Product,
    broker: Broker,
    progress: Callable[[int], None] | None = None,
) -> list[RowError]:
    """Every problem of every row: field rules, device ids twice in the file or
    already in the product, and subscription names taken on the broker."""
    errors: list[RowError] = []
    if broker.product_id != product.pk:
        return [RowError(0, "", "broker", _("The broker belongs to another product."))]
    existing = set(
        Device.objects.filter(product=product).values_list("device_id", flat=True)
    )
    taken_names = set(
        Subscription.objects.filter(broker=broker).values_list("name", flat=True)
    )
    first_line: dict[str, int] = {}
    for count, row in enumerate(rows, start=1):
        device = _device_for(row, product, broker)
        try:
            device.clean_fields(exclude=["product", "broker"])
        except ValidationError as exc:
            found = exc.message_dict
            for field, messages in found.items():
                if field in DERIVED_FIELDS:
                    # Made from the topic: its error is the topic's, said once.
                    if "topic" in found:
                        continue
                    field = "topic"
                errors.append(RowError(row.line, row.device_id, field, messages[0]))
        if row.device_id in first_line:
            errors.append(
                RowError(
                    row.line,
                    row.device_id,
                    "device_id",
                    _("The device id is on line %d already.")
                    % first_line[row.device_id],
                )
            )
        elif row.device_id:
            first_line[row.device_id] = row.line
            if row.device_id in existing:
                errors.append(
                    RowError(
                        row.line,
                        row.device_id,
                        "device_id",
                        _("A device with this id exists in %s already.") % product.name,
                    )
                )
            else:
                for spec in managed_subscriptions(device).values():
                    if spec is not None and spec["name"] in taken_names:
                        errors.append(
                            RowError(
                                row.line,
                                row.device_id,
                                "device_id",
                                _("The broker has a subscription named “%s”.")
                                % spec["name"],
                            )
                        )
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(count)
    return errors


def check_csv(
    text: str,
    product: Product,
    broker: Broker,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[ImportRow], list[RowError]]:
    """Parse and check a whole file: every problem, in line order."""
    rows, errors = parse_csv(text)
    if rows:
        errors += validate_rows(rows, product, broker, progress)
    errors.sort(key=lambda error: error.line)
    return rows, errors


def create_devices(
    *, actor: Any, product: Product, broker: Broker, rows: list[ImportRow]
) -> list[Device]:
    """Create validated rows and their managed subscriptions in one transaction."""
    devices = [_device_for(row, product, broker) for row in rows]
    try:
        with transaction.atomic():
            subscriptions: list[Subscription] = []
            links: list[tuple[Device, str, Subscription]] = []
            for device in devices:
                for attr, spec in managed_subscriptions(device).items():
                    if spec is None:
                        continue
                    subscription = Subscription(broker=broker, **spec)
                    subscriptions.append(subscription)
                    links.append((device, attr, subscription))
            Subscription.objects.bulk_create(subscriptions, batch_size=BULK_SIZE)
            for device, attr, subscription in links:
                setattr(device, attr, subscription)
            Device.objects.bulk_create(devices, batch_size=BULK_SIZE)
            audit_record(
                actor=actor,
                action="device.import",
                product=product,
                changes={
                    "broker": [None, broker.pk],
                    "devices": [None, len(devices)],
                    "device_ids": [None, [d.device_id for d in devices[:AUDITED_IDS]]],
                },
            )
            runtime_nudge()
    except IntegrityError:
        # Someone added one of these ids (or subscription names) meanwhile.
        raise ImportFailed(
            [
                RowError(
                    0,
                    "",
                    "device_id",
                    _("A device or subscription was added meanwhile; try again."),
                )
            ]
        ) from None
    return devices


def import_csv(
    *, actor: Any, product: Product, broker: Broker, text: str
) -> list[Device]:
    """Check the whole file, then create every device; ImportFailed lists the
    problems when there is any (and nothing is imported)."""
    rows, errors = check_csv(text, product, broker)
    if errors:
        raise ImportFailed(errors)
    if not rows:
        raise ImportFailed([RowError(2, "", "file", _("The file has no devices."))])
    return create_devices(actor=actor, product=product, broker=broker, rows=rows)


# --- Imports from the page, with progress -----------------------------------------


@transaction.atomic
def import_start(
    *, actor: Any, product: Product, broker: Broker, text: str, filename: str = ""
) -> DeviceImport:
    """Keep the file and hand it to a worker; the page follows its progress."""
    job = DeviceImport.objects.create(
        product=product,
        broker=broker,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        filename=filename[:255],
        text=text,
    )
    enqueue_on_commit("devices.run_import", job.pk)
    return job


def _count_rows(text: str) -> int:
    """About how many devices a file holds (lines less the header), for progress."""
    return max(0, sum(1 for line in text.splitlines() if line.strip()) - 1)


def _finish(
    job: DeviceImport, state: str, errors: list[RowError] | None = None
) -> None:
    job.state = state
    job.errors = [e.as_dict() for e in (errors or [])[:MAX_REPORTED_ERRORS]]
    job.finished_at = timezone.now()
    job.text = ""  # the devices exist or the errors say why not: the file can go
    job.save(update_fields=["state", "errors", "finished_at", "text", "imported"])


def import_run(*, import_id: int) -> DeviceImport:
    """Run one page import: progress is saved as rows are checked (outside any
    transaction, so the page sees it), then all devices are created at once."""
    job = DeviceImport.objects.select_related("product", "broker").get(pk=import_id)
    if job.state != ImportState.PENDING:
        return job  # a redelivered task: the first run owns it
    job.state = ImportState.RUNNING
    job.save(update_fields=["state"])
    try:
        job.total = _count_rows(job.text)
        job.save(update_fields=["total"])

        def progress(count: int) -> None:
            job.processed = count
            job.save(update_fields=["processed"])

        rows, errors = check_csv(job.text, job.product, job.broker, progress)
        job.total = job.processed = len(rows)
        job.save(update_fields=["total", "processed"])
        if not errors and not rows:
            errors = [RowError(2, "", "file", _("The file has no devices."))]
        if errors:
            _finish(job, ImportState.FAILED, errors)
            return job
        devices = create_devices(
            actor=job.actor, product=job.product, broker=job.broker, rows=rows
        )
        job.imported = len(devices)
        _finish(job, ImportState.DONE)
    except ImportFailed as exc:
        _finish(job, ImportState.FAILED, exc.errors)
    except Exception as exc:
        logger.exception("device import %s failed", job.pk)
        _finish(
            job,
            ImportState.FAILED,
            [RowError(0, "", "file", _("The import failed: %s") % exc)],
        )
    return job
