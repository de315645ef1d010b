"""Signing as the Standard Webhooks specification says (https://www.standardwebhooks.com/).

A secret is ``whsec_`` followed by the base64 of 32 random bytes. Each attempt sends

* ``webhook-id`` — the message id, the same on every attempt and redelivery (receivers deduplicate on it);
* ``webhook-timestamp`` — the attempt's Unix time in seconds (receivers refuse stale ones: replay defence);
* ``webhook-signature`` — ``v1,<base64 of HMAC-SHA256(secret bytes, "{id}.{timestamp}.{body}")>``, several
  separated by spaces while an old secret is still valid after a rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def generate_secret() -> str:
    """A new signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret (its base64-decoded bytes)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """One ``v1,<base64>`` signature of the message."""
    content = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets_: Iterable[str], message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value: one signature per live secret, space-separated."""
    return " ".join(sign(s, message_id, timestamp, body) for s in secrets_)


def headers(secrets_: Iterable[str], message_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets_, message_id, timestamp, body),
    }
