"""The digest's subject line and its dates (pure: no I/O).

DESIGN.md section 8: 'Paper digest — 7 new papers for "diffusion" (Tue 4 Nov)'; one line, at most
``SUBJECT_MAX`` characters, the rule labels cut first (the date stays).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from digest.mailtemplates import subject_template
from digest.models import MatchedPaper, Rule
from digest.paperblocks import clip, one_line

SUBJECT_MAX = 120
SUBJECT_LABELS_MAX = 60
SUBJECT_TITLE_MAX = 40
LABEL_MAX = 40

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def dates(day: date) -> tuple[str, str]:
    """'Friday 21 August 2026' and 'Fri 21 Aug'."""
    weekday, month = _DAYS[day.weekday()], _MONTHS[day.month - 1]
    return f"{weekday} {day.day} {month} {day.year}", f"{weekday[:3]} {day.day} {month[:3]}"


def matched_labels(papers: Sequence[MatchedPaper], rules: Sequence[Rule]) -> list[str]:
    """The labels of the rules that matched (each paper counts for its first rule), in rule order."""
    matched = {mp.why[0].rule for mp in papers if mp.why}
    ordered = [r.label for r in rules if r.label in matched]
    ordered += sorted(matched.difference(ordered))
    return [label for label in (one_line(x) for x in ordered) if label]


def _quoted(label: str) -> str:
    # A rule like "flow matching" is quoted once, not twice; other double quotes inside become single ones.
    if len(label) >= 2 and label[0] == label[-1] == '"' and '"' not in label[1:-1]:
        label = label[1:-1]
    return '"' + label.replace('"', "'") + '"'


def _label_phrase(labels: list[str], budget: int) -> str:
    """'"a"', '"a" and "b"' or '"a", "b" and 2 more', as many labels as fit in ``budget`` characters."""
    if not labels:
        return ""
    quoted = [_quoted(clip(label, LABEL_MAX)) for label in labels]
    for shown in range(min(2, len(quoted)), 0, -1):
        rest = len(quoted) - shown
        phrase = " and ".join(quoted) if rest == 0 else f"{', '.join(quoted[:shown])} and {rest} more"
        if len(phrase) <= budget:
            return phrase
    # Not even one label fits: shorten the first one.
    more = f" and {len(quoted) - 1} more" if len(quoted) > 1 else ""
    room = max(budget - len(more) - 2, 1)
    return _quoted(clip(labels[0], room)) + more


def render_subject(title: str, count: int, labels: list[str], date_short: str) -> str:
    """DESIGN.md section 8: 'Paper digest — 7 new papers for "diffusion" (Tue 4 Nov)'; one line, at most
    SUBJECT_MAX characters, the labels cut first (the date stays)."""
    template = subject_template()
    title = clip(title, SUBJECT_TITLE_MAX)
    bare = one_line(template.render(title=title, count=count, labels="", date_short=date_short))
    budget = min(SUBJECT_LABELS_MAX, SUBJECT_MAX - len(bare) - len(" for "))
    phrase = _label_phrase(labels, budget) if budget > 4 else ""
    if not phrase:
        return clip(bare, SUBJECT_MAX)
    line = one_line(template.render(title=title, count=count, labels=phrase, date_short=date_short))
    return clip(line, SUBJECT_MAX)
