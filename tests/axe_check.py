"""axe-core in Chromium: the accessibility audit the web pages and the digest mail must pass.

axe-core comes from the npm registry, pinned in tests/a11y/package-lock.json (scripts/test runs ``npm ci``).
The pages' CSP allows no inline or injected <script>, so the engine is evaluated through the DevTools
protocol (``page.evaluate``), which the CSP does not govern, and then run on the document as it is.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

AXE_JS = Path(__file__).resolve().parent / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
#: What the issue's audit ran: WCAG 2.0 and 2.1, A and AA, plus axe's best practices.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
#: Impacts that fail a test; "moderate" and "minor" findings are only printed with a failure.
BLOCKING = ("serious", "critical")

_RUN = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: n.target.join(" "), summary: n.failureSummary, html: n.html.slice(0, 200)}))
  }));
}"""


@cache
def axe_source() -> str:
    if not AXE_JS.exists():
        message = f"{AXE_JS} is missing: scripts/test installs it (npm ci --prefix tests/a11y)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return AXE_JS.read_text("utf-8")


def violations(page: Any) -> list[dict[str, Any]]:
    """Every axe violation on the page as it is now (all impacts)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # The file is a UMD bundle: evaluated at the top level it sets window.axe.
        page.evaluate(axe_source() + "\n;undefined")
    found: list[dict[str, Any]] = page.evaluate(_RUN, TAGS)
    return found


def assert_accessible(page: Any, where: str) -> list[dict[str, Any]]:
    """Fail when axe finds a serious or critical violation; returns all findings for further checks."""
    found = violations(page)
    blocking = [v for v in found if v["impact"] in BLOCKING]
    assert not blocking, f"{where}: axe-core found\n" + json.dumps(found, indent=1)
    return found


def _rgb(css: str) -> tuple[float, float, float]:
    parts = css[css.index("(") + 1 : css.index(")")].split(",")
    r, g, b = (float(x) for x in parts[:3])
    return r, g, b


def _luminance(css: str) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in _rgb(css))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """The WCAG contrast ratio of two CSS rgb() colours."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)
