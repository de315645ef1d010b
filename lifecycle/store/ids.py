"""Row ids: random UUIDs (version 4) as text."""

from __future__ import annotations

import os


def new_id() -> str:
    """A fresh row id: random UUID version 4 text. Several are made for every event and deadline fired, so it
    is written out from 16 random bytes directly rather than through :class:`uuid.UUID` (a quarter of the
    cost; the same text)."""
    digits = os.urandom(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"
