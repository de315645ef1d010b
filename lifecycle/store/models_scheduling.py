"""Tables for Deadline escalations, recurring obligations, traffic lights and escalation notices.

Kept apart from :mod:`.models` so that each area owns its schema; they share its metadata (and naming
convention) through :class:`~lifecycle.store.models.Base`, and ``models`` imports this module so that the
metadata is complete wherever it is used.
"""

from __future__ import annotations

from .models import Base

__all__ = ["Base"]
