"""Settings of webhook delivery, read from the environment (``LIFECYCLE_WEBHOOKS_*``).

Every setting has a production default; tests shorten the timeout and lease and allow private addresses
(their receivers listen on 127.0.0.1).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from lifecycle.settings import SettingsError, env_number

RETRY_SCHEDULE: tuple[float, ...] = (0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
"""Delay before attempt 1, 2, … 8, in seconds: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 28 h
in all, the schedule Svix and Standard Webhooks describe). After the last attempt fails the delivery is given up."""


def _flag(env: Mapping[str, str], name: str) -> bool:
    return (env.get(name) or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class WebhookSettings:
    """How webhooks are delivered.

    Attributes:
        allow_private: deliver to loopback, private, link-local and metadata addresses too
            (``LIFECYCLE_WEBHOOKS_ALLOW_PRIVATE=1``; for tests and closed networks only).
        timeout_seconds: the whole of one attempt, connection to last byte read (``…_TIMEOUT_SECONDS``, 15).
        lease_seconds: how long a claimed delivery stays claimed; a dispatcher that dies holding it gives it up
            after this long (``…_LEASE_SECONDS``; default the timeout plus 45 s, never less than the timeout).
        poll_seconds: how often an idle dispatcher looks for due deliveries (``…_POLL_SECONDS``, 0.5).
        batch_size: deliveries one dispatcher claims and sends at once (``…_BATCH``, 32).
        max_payload_bytes: larger bodies are trimmed to the envelope and a pointer to the API (256 KiB).
        retry_schedule: see :data:`RETRY_SCHEDULE`.
        jitter: each retry delay is multiplied by a random factor in ``[1 - jitter, 1 + jitter]``.
        disable_after: an endpoint failing without a single success for this long is disabled (5 days).
        secret_overlap: after a rotation the old secret still signs for this long (24 h).
    """

    allow_private: bool = False
    timeout_seconds: float = 15.0
    lease_seconds: float = 60.0
    poll_seconds: float = 0.5
    batch_size: int = 32
    max_payload_bytes: int = 256 * 1024
    retry_schedule: tuple[float, ...] = RETRY_SCHEDULE
    jitter: float = 0.1
    disable_after: timedelta = timedelta(days=5)
    secret_overlap: timedelta = field(default=timedelta(hours=24))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebhookSettings:
        """The settings named by ``LIFECYCLE_WEBHOOKS_*`` variables (default ``os.environ``).

        Raises:
            SettingsError: a value is not usable.
        """
        env = os.environ if environ is None else environ
        timeout = env_number(env, "LIFECYCLE_WEBHOOKS_TIMEOUT_SECONDS", 15.0, 0.05, 300)
        lease = env_number(env, "LIFECYCLE_WEBHOOKS_LEASE_SECONDS", timeout + 45, 0.1, 3600)
        if lease < timeout:
            raise SettingsError("LIFECYCLE_WEBHOOKS_LEASE_SECONDS must not be shorter than the timeout")
        return cls(
            allow_private=_flag(env, "LIFECYCLE_WEBHOOKS_ALLOW_PRIVATE"),
            timeout_seconds=timeout,
            lease_seconds=lease,
            poll_seconds=env_number(env, "LIFECYCLE_WEBHOOKS_POLL_SECONDS", 0.5, 0.01, 60),
            batch_size=int(env_number(env, "LIFECYCLE_WEBHOOKS_BATCH", 32, 1, 1000)),
        )
