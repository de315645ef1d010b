"""Liveness and readiness answers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Alive(BaseModel):
    """The process is running."""

    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    """The service can serve: the database answers and is at the newest migration."""

    status: Literal["ready"] = "ready"
    revision: str | None = None
