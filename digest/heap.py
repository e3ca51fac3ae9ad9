"""Fewer garbage collections during the long loops (planning, delivery).

A 5,000-digest delivery made about 90 young-generation collections and one full one, 435 ms together (about
90 µs a message, most of it the full collection walking every paper, stencil and cache built before the loop).
Inside ``fewer_collections`` the objects that existed before it are frozen out of the collector's sight
(``gc.freeze``), and the young generation is collected every 10,000 new objects instead of 700: 7 ms. Cyclic
garbage is still collected, just in larger, rarer steps, and everything is as before once the last loop ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["fewer_collections"]

YOUNG_THRESHOLD = 10_000

_lock = threading.Lock()
_depth = 0  # loops inside fewer_collections now (a serve process can run several at once)
_saved: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect less while inside (see the module); nested and overlapping uses restore once, at the last exit."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(YOUNG_THRESHOLD, _saved[0]), _saved[1], _saved[2])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_saved)
                gc.unfreeze()
