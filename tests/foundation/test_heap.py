"""Fewer collections during the long loops: the collector's settings come back exactly, however the loops
overlap, and cyclic garbage made inside is still collected."""

from __future__ import annotations

import gc
import weakref
from contextlib import ExitStack

from digest.heap import YOUNG_THRESHOLD, fewer_collections


def test_inside_the_young_generation_waits_longer_and_older_objects_are_frozen() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold()[0] >= YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_overlapping_loops_restore_the_settings_once_at_the_last_exit() -> None:
    before = gc.get_threshold()
    first, second = ExitStack(), ExitStack()
    first.enter_context(fewer_collections())
    second.enter_context(fewer_collections())
    first.close()  # the first loop ends while the second still runs
    assert gc.get_threshold()[0] >= YOUNG_THRESHOLD
    second.close()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cyclic_garbage_made_inside_is_still_collected() -> None:
    class Node:
        pass

    collected: list[bool] = []
    with fewer_collections():
        node = Node()
        node.self = node  # type: ignore[attr-defined]
        weakref.finalize(node, collected.append, True)
        del node
        kept = [[i] for i in range(3 * YOUNG_THRESHOLD)]  # new objects: the young generation fills up
        assert collected == [True]
    assert len(kept) == 3 * YOUNG_THRESHOLD
