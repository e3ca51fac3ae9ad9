"""The dashboard chart's geometry (pure): stacked segments in proportion, small counts still visible, even
ticks, labels inside the canvas, and a sentence that says the same as the picture."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

from digest.store.console import DayCounts
from digest.web.admin.chart import HEIGHT, MIN_SEGMENT, WIDTH, build_chart

START = date(2026, 2, 1)


def days(*counts: dict[str, int]) -> list[DayCounts]:
    full = [{"sent": 0, "failed": 0, "uncertain": 0, "bounced": 0, **c} for c in counts]
    return [DayCounts(START + timedelta(days=i), c) for i, c in enumerate(full)]


def test_segments_stack_in_proportion_and_a_lone_failure_still_shows() -> None:
    chart = build_chart(days({"sent": 1000, "failed": 1}, {}, {"sent": 500}))
    sent, failed, half = chart.rects
    assert (sent.css, failed.css, half.css) == ("sent", "failed", "sent")
    assert failed.h == MIN_SEGMENT and failed.y + failed.h == sent.y  # on top of the sent part
    assert abs(sent.h / half.h - 2) < 0.02
    assert sent.y + sent.h == chart.baseline
    assert failed.label == "Sun 1 Feb: 1 failed"


def test_ticks_are_evenly_spaced_round_numbers() -> None:
    for top in (0, 3, 7, 23, 480, 12345):
        labels = [int(t.label) for t in build_chart(days({"sent": top})).ticks]
        steps = {b - a for a, b in itertools.pairwise(labels)}
        assert labels[0] == 0 and labels[-1] >= top and len(steps) == 1 and len(labels) <= 6, (top, labels)


def test_everything_is_drawn_inside_the_canvas() -> None:
    chart = build_chart(days(*[{"sent": i, "bounced": i % 3} for i in range(30)]))
    assert all(r.x >= 0 and r.x + r.w <= WIDTH and r.y >= 0 and r.y + r.h <= HEIGHT for r in chart.rects)
    assert all(chart.left <= d.x <= WIDTH - 20 for d in chart.days)
    assert chart.days[-1].label == "2 Mar"  # the newest day is always labelled


def test_the_text_alternative_gives_the_totals_and_the_worst_day() -> None:
    chart = build_chart(days({"sent": 3}, {"sent": 2, "failed": 4, "bounced": 1}, {"uncertain": 2}))
    assert chart.summary == (
        "From 1 Feb to 3 Feb 2026: 5 sent, 4 failed, 2 uncertain, 1 bounced. "
        "Most failures and bounces on Mon 2 Feb (5)."
    )
    assert [(css, total) for css, _name, total in chart.legend] == [
        ("sent", 5),
        ("failed", 4),
        ("uncertain", 2),
        ("bounced", 1),
    ]
