"""The dashboard's 30-day chart as plain geometry for an SVG template (no script, no CDN, no style attribute).

Stacked bars per day (sent at the bottom, then failed, uncertain, bounced), colours from classes in the
stylesheet, a legend, a <title> per segment, and a sentence plus a table as the text alternative.
"""

from __future__ import annotations

from dataclasses import dataclass

from digest.store.console import CHART_STATES, DayCounts

# A small canvas scaled to the screen: its labels stay readable on a 375 px phone and on a desktop.
WIDTH = 480
HEIGHT = 230
LEFT = 40  # room for the y axis labels
BOTTOM = 26  # room for the day labels
RIGHT = 22  # room for half of the last day's label
TOP = 10
#: A segment with any count is at least this tall, so one failure among thousands of sent still shows.
MIN_SEGMENT = 3.0


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    css: str
    label: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class DayLabel:
    x: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    baseline: float
    rects: list[Rect]
    ticks: list[Tick]
    days: list[DayLabel]
    legend: list[tuple[str, str, int]]  # (css class, name, total)
    summary: str
    rows: list[DayCounts]


def _scale(value: int) -> tuple[int, int]:
    """(axis maximum, tick step): a step of 1, 2 or 5 times a power of ten, at most five steps high."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step * 5 >= value:
                return max(m * step, -(-value // (m * step)) * m * step), m * step
        step *= 10


def build_chart(days: list[DayCounts]) -> Chart:
    """The geometry of the stacked-bar chart of ``days`` (oldest first)."""
    plot_h = HEIGHT - TOP - BOTTOM
    plot_w = WIDTH - LEFT - RIGHT
    top, tick_step = _scale(max(4, *(d.total for d in days)))
    slot = plot_w / max(1, len(days))
    bar_w = max(2.0, slot * 0.7)
    baseline = TOP + plot_h
    rects: list[Rect] = []
    for i, day in enumerate(days):
        x = LEFT + i * slot + (slot - bar_w) / 2
        y: float = baseline
        for state in CHART_STATES:
            n = day.counts.get(state, 0)
            if not n:
                continue
            h = max(MIN_SEGMENT, plot_h * n / top)
            y -= h
            rects.append(
                Rect(
                    round(x, 1),
                    round(y, 1),
                    round(bar_w, 1),
                    round(h, 1),
                    state,
                    f"{day.day:%a %-d %b}: {n} {state}",
                )
            )
    ticks = [Tick(round(baseline - plot_h * v / top, 1), str(v)) for v in range(0, top + 1, tick_step)]
    step = max(1, -(-len(days) // 5))
    labels = [
        DayLabel(round(LEFT + i * slot + slot / 2, 1), f"{d.day:%-d %b}")
        for i, d in enumerate(days)
        if (len(days) - 1 - i) % step == 0
    ]
    totals = {s: sum(d.counts.get(s, 0) for d in days) for s in CHART_STATES}
    legend = [(s, s, totals[s]) for s in CHART_STATES]
    if days:
        span = f"{days[0].day:%-d %b} to {days[-1].day:%-d %b %Y}"
        summary = f"From {span}: " + ", ".join(f"{totals[s]} {s}" for s in CHART_STATES) + "."
        worst = max(days, key=lambda d: d.counts.get("failed", 0) + d.counts.get("bounced", 0))
        bad = worst.counts.get("failed", 0) + worst.counts.get("bounced", 0)
        if bad:
            summary += f" Most failures and bounces on {worst.day:%a %-d %b} ({bad})."
    else:
        summary = "No days to show."
    return Chart(WIDTH, HEIGHT, LEFT, baseline, rects, ticks, labels, legend, summary, days)
