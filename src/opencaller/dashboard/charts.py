"""Small server-side charts as inline SVG: no JavaScript, no external files.

Each bar carries a <title>, so hovering shows the exact number, and the figure has an
aria-label for screen readers. Colours come from CSS classes (static/dashboard.css).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from markupsafe import Markup


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: list[float]
    css: str  # class of the bars, e.g. "s-ok"


def _nice_max(value: float) -> float:
    """A round upper bound for the axis (1, 2, 5 × 10^n)."""
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= value:
        step *= 10
    for m in (1, 2, 5, 10):
        if m * step >= value:
            return m * step
    return 10 * step


def _fmt(v: float) -> str:
    return f"{v:.2f}" if v != int(v) else str(int(v))


def bar_chart(
    labels: list[str],
    series: list[Series],
    *,
    title: str,
    width: int = 720,
    height: int = 220,
    unit: str = "",
    axis_max: float | None = None,
) -> Markup:
    """Stacked bars, one column per label (days left to right); ``axis_max`` fixes the axis
    (100 for percentages), else it fits the tallest bar."""
    left, right, top, bottom = 44, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    top_value = axis_max or _nice_max(max(totals, default=0))
    n = max(1, len(labels))
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.7)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="none">'
    ]
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_fmt(top_value * frac)}</text>"
        )
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar_w) / 2
        base = float(top + plot_h)
        for s in series:
            v = s.values[i]
            if v <= 0:
                continue
            h = plot_h * v / top_value
            base -= h
            parts.append(
                f'<rect class="{s.css}" x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}"><title>{escape(label)} · {escape(s.name)}: '
                f"{_fmt(v)}{escape(unit)}</title></rect>"
            )
        every = max(1, n // 8)
        if i % every == 0:
            parts.append(
                f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{height - 8}" '
                f'text-anchor="middle">{escape(label[5:])}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def legend(series: list[Series]) -> Markup:
    items = "".join(
        f'<span class="key"><i class="{s.css}"></i>{escape(s.name)}</span>' for s in series
    )
    return Markup(f'<div class="legend">{items}</div>')
