"""Sparklines and line charts drawn on the server as inline SVG (no JavaScript).

Values come in evenly spaced slots (time buckets) where None marks an empty slot:
a value's x is its time. Sparklines break the line at long silences; charts break
it at every gap and shade the range between each bucket's minimum and maximum.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _


def _fmt(value: float) -> str:
    """A number for an axis or a label: four significant digits."""
    return f"{value:.4g}"


def _coord(value: float) -> str:
    return f"{value:.1f}"


def _scale(values: Sequence[float | None]) -> tuple[float, float]:
    present = [v for v in values if v is not None]
    low, high = min(present), max(present)
    if high == low:
        # A flat series sits in the middle rather than on an edge.
        spread = abs(low) * 0.1 or 1.0
        low, high = low - spread, high + spread
    return low, high


# A silence longer than this many empty slots breaks a sparkline (a device that
# reports every half hour still draws a line; a device down for hours does not).
SPARKLINE_GAP_SLOTS = 4


def sparkline_svg(
    values: Sequence[float | None],
    *,
    width: int = 120,
    height: int = 28,
    label: str = "",
) -> SafeString:
    """A small line of the values over time: slot i stands at i/(len-1) of the
    width whatever the other slots hold, a silence longer than SPARKLINE_GAP_SLOTS
    leaves a gap, a lone reading is a dot; an empty dashed line when there are
    none."""
    pad = 2.0
    present = [(i, v) for i, v in enumerate(values) if v is not None]
    if not present:
        middle = _coord(height / 2)
        return mark_safe(  # noqa: S308 (numbers and escaped text only)
            f'<svg class="sparkline empty" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(label)} {escape(_("no recent data"))}">'
            f'<line x1="{pad}" y1="{middle}" x2="{width - pad}" y2="{middle}" '
            'stroke="currentColor" stroke-dasharray="2 3" opacity="0.4"/></svg>'
        )
    low, high = _scale(values)
    slots = max(len(values) - 1, 1)

    def x(i: int) -> float:
        return pad + i * (width - 2 * pad) / slots

    def y(v: float) -> float:
        return height - pad - (v - low) / (high - low) * (height - 2 * pad)

    segments: list[list[tuple[int, float]]] = []
    for i, v in present:
        if segments and i - segments[-1][-1][0] <= SPARKLINE_GAP_SLOTS:
            segments[-1].append((i, v))
        else:
            segments.append([(i, v)])
    shapes = []
    for segment in segments:
        if len(segment) == 1:
            i, v = segment[0]
            shapes.append(
                f'<circle cx="{_coord(x(i))}" cy="{_coord(y(v))}" r="1.25" '
                'fill="currentColor"/>'
            )
        else:
            points = " ".join(f"{_coord(x(i))},{_coord(y(v))}" for i, v in segment)
            shapes.append(
                f'<polyline points="{points}" fill="none" stroke="currentColor" '
                'stroke-width="1.5" stroke-linejoin="round" stroke-linecap="round"/>'
            )
    last_i, last_v = present[-1]
    real = [v for _i, v in present]
    summary = _("%(label)s: from %(low)s to %(high)s, last %(last)s") % {
        "label": label,
        "low": _fmt(min(real)),
        "high": _fmt(max(real)),
        "last": _fmt(last_v),
    }
    return mark_safe(  # noqa: S308 (numbers and escaped text only)
        f'<svg class="sparkline" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(summary)}">'
        + "".join(shapes)
        + f'<circle cx="{_coord(x(last_i))}" cy="{_coord(y(last_v))}" r="2" '
        'fill="currentColor"/></svg>'
    )


def _runs(values: Sequence[float | None]) -> list[list[int]]:
    """Indexes of consecutive slots that have values."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i, value in enumerate(values):
        if value is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(i)
    if current:
        runs.append(current)
    return runs


def _time_label(at: datetime.datetime, span: datetime.timedelta) -> str:
    local = timezone.localtime(at)
    if span <= datetime.timedelta(days=1):
        return local.strftime("%H:%M")
    return local.strftime("%m-%d %H:%M")


def line_chart_svg(
    *,
    avg: Sequence[float | None],
    low: Sequence[float | None],
    high: Sequence[float | None],
    start: datetime.datetime,
    bucket: int,
    width: int = 640,
    height: int = 180,
    label: str = "",
) -> SafeString:
    """A chart of bucket averages over time with the min-max range shaded, axis
    labels for the value range and the start, middle and end times."""
    left, right, top, bottom = 44.0, 8.0, 8.0, 20.0
    plot_w, plot_h = width - left - right, height - top - bottom
    count = len(avg)
    span = datetime.timedelta(seconds=bucket * count)
    everything = [v for v in (*low, *high, *avg) if v is not None]
    parts: list[str] = []
    if everything:
        lo, hi = _scale(everything)
    else:
        lo, hi = 0.0, 1.0

    def x(i: float) -> float:
        return left + (i + 0.5) * plot_w / max(count, 1)

    def y(v: float) -> float:
        return top + plot_h - (v - lo) / (hi - lo) * plot_h

    for fraction in (0.0, 0.5, 1.0):
        gy = _coord(top + plot_h * (1 - fraction))
        parts.append(
            f'<line class="grid" x1="{left}" y1="{gy}" x2="{width - right}" '
            f'y2="{gy}" stroke="currentColor" opacity="0.15"/>'
        )
        if everything:
            parts.append(
                f'<text x="{left - 4}" y="{gy}" text-anchor="end" '
                f'dominant-baseline="middle">{_fmt(lo + (hi - lo) * fraction)}</text>'
            )
    for run in _runs(avg):
        highs = [(i, high[i]) for i in run if high[i] is not None]
        lows = [(i, low[i]) for i in reversed(run) if low[i] is not None]
        if len(run) > 1 and highs and lows:
            band = " ".join(
                f"{_coord(x(i))},{_coord(y(v))}"
                for i, v in [*highs, *lows]
                if v is not None
            )
            parts.append(
                f'<polygon class="band" points="{band}" fill="currentColor" '
                'opacity="0.15"/>'
            )
        coords = [
            f"{_coord(x(i))},{_coord(y(v))}" for i in run if (v := avg[i]) is not None
        ]
        if len(coords) == 1:
            cx, cy = coords[0].split(",")
            parts.append(
                f'<circle class="avg" cx="{cx}" cy="{cy}" r="2.5" fill="currentColor"/>'
            )
        else:
            parts.append(
                f'<polyline class="avg" points="{" ".join(coords)}" fill="none" '
                'stroke="currentColor" stroke-width="1.75" stroke-linejoin="round"/>'
            )
    for fraction, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        at = start + span * fraction
        parts.append(
            f'<text x="{_coord(left + plot_w * fraction)}" y="{height - 4}" '
            f'text-anchor="{anchor}">{escape(_time_label(at, span))}</text>'
        )
    if not everything:
        parts.append(
            f'<text x="{_coord(left + plot_w / 2)}" y="{_coord(top + plot_h / 2)}" '
            f'text-anchor="middle">{escape(_("No data in this range."))}</text>'
        )
    return mark_safe(  # noqa: S308 (numbers and escaped text only)
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}">' + "".join(parts) + "</svg>"
    )
