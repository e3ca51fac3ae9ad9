"""The one Jinja environment factory for mail and web templates (pure: templates ship in the package)."""

from __future__ import annotations

import re
from functools import cache
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

# Certainly accepted by safe_url (scheme, host, no space/control/bracket): most URLs skip urlsplit, which
# cost a digest more than its rendering once digests were shared (digest.stencil).
_PLAIN_HTTP_URL = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:[/?#][A-Za-z0-9._~!$&'()*+,;=:@%/?#-]*)?\Z"
)


def safe_url(value: object) -> str:
    """The URL when it is http(s) and one clean line, else '' (so no javascript: or data: link is rendered)."""
    if not isinstance(value, str):
        return ""
    if _PLAIN_HTTP_URL.match(value):
        return value
    url = value.strip()
    # isprintable() is False for every control character (CR, LF, NUL, tab, DEL, C1) and for Unicode
    # line/paragraph separators; one C-level scan instead of a Python loop per character.
    if not url.isprintable() or " " in url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    return url


@cache
def environment() -> Environment:
    """Autoescaped for .html/.html.j2, not for .txt.j2; undefined variables are errors."""
    env = Environment(
        loader=PackageLoader("digest", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2", "htm"), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["safe_url"] = safe_url
    return env
