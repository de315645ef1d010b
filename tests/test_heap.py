"""The collector settings of long-running processes (:mod:`lifecycle.heap`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from lifecycle import heap


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """The test process's collector as it was, after the test."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settle_freezes_what_is_loaded_and_makes_collections_rarer(restored_collector: None) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    loaded = [object(), [1, 2], {"k": "v"}]  # containers the collector tracks
    heap.settle()
    assert gc.get_freeze_count() > len(loaded)
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, *heap.OLDER_THRESHOLDS)
    assert heap.YOUNG_THRESHOLD > 700  # rarer than CPython's default
    gc.collect()  # a full collection leaves the frozen objects frozen
    assert gc.get_freeze_count() > len(loaded)
