"""The digest's Jinja templates, with their CSS inlined once per process (pure: reads package files only).

The template marks elements with ``css="class names"``; when a template is loaded, each mark becomes
``class="…" style="…"`` with the style css-inline computed for those classes from
``templates/email/digest.css``. Rendering a message is then one Jinja render, with no HTML parsing.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import css_inline
from jinja2 import Template
from markupsafe import Markup, escape

from digest.templating import environment

_CSS_MARK = re.compile(r'\bcss="([A-Za-z0-9_ -]+)"')
_SIMPLE_CLASS_RULE = re.compile(r"\.([A-Za-z0-9_-]+)\s*\{")


@cache
def _css_source(name: str) -> str:
    return resources.files("digest").joinpath("templates", "email", name).read_text("utf-8")


@cache
def _inline_style(classes: str) -> str:
    """The style="" value css-inline gives an element with these classes under digest.css."""
    probe = f'<div class="{classes}"></div>'
    inlined = css_inline.inline_fragment(probe, _css_source("digest.css"))
    found = re.search(r'style="([^"]*)"', inlined)
    if not found:
        return ""
    # css-inline writes "color: red;padding: 2px;": drop the optional spaces and final ";" (mail size).
    return ";".join(d.strip().replace(": ", ":", 1) for d in found.group(1).split(";") if d.strip())


def inline_marks(source: str) -> str:
    def replace(match: re.Match[str]) -> str:
        classes = " ".join(match.group(1).split())
        style = _inline_style(classes)
        styled = f' style="{escape(style)}"' if style else ""
        return f'class="{classes}"{styled}'

    return _CSS_MARK.sub(replace, source)


@cache
def html_template(name: str) -> Template:
    env = environment()
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, name)
    # from_string: the environment autoescapes string templates (select_autoescape default_for_string=True).
    return env.from_string(inline_marks(source))


@cache
def text_template(name: str) -> Template:
    return environment().get_template(name)


@cache
def subject_template() -> Template:
    return text_template("email/subject.txt.j2")


@cache
def head_css() -> Markup:
    # Our own file, not user input: safe to emit inside <style> as is.
    return Markup(_css_source("digest-head.css").strip())


def known_classes() -> list[str]:
    """The class names digest.css styles (used by tests to prove every rule is a simple class rule)."""
    return _SIMPLE_CLASS_RULE.findall(_css_source("digest.css"))
