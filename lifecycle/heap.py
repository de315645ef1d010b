"""The cyclic garbage collector's settings for a long-running process (the API server, the scheduler).

Why: with Python's default thresholds (700, 10, 10) a young collection runs every 700 allocations. A request
allocates thousands of objects, so with 32 requests in flight each young collection walks the live objects of
all of them, and every hundredth collection is a full one that walks the whole heap: on the API benchmark
(``bench/api.py``) collections took about a tenth of the server's CPU, and each full collection stopped the
event loop for some 35 ms. Two changes, made once everything the process lives with is loaded:

* :func:`gc.freeze` moves those objects (definitions, SQLAlchemy metadata, pydantic schemas, routes) out of
  the collector's reach, so full collections walk only what came after;
* higher thresholds make collections rarer; together they brought the collector's share to about 1.5%.
  Garbage that forms reference cycles then lives up to :data:`YOUNG_THRESHOLD` allocations longer (a few
  MB at most); everything else is freed by reference counting as before.
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 10_000
"""Allocations (net of deallocations) between two collections of the youngest generation."""

OLDER_THRESHOLDS: Final = (20, 20)
"""Young collections per middle-generation collection, and middle per full (besides CPython's own rule that
a full collection waits until a quarter of the long-lived objects are new)."""


def settle() -> None:
    """Freeze everything allocated so far and set the collector's thresholds (see the module docstring)."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
