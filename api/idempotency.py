"""``Idempotency-Key`` on POST: a retried request gets the first answer instead of running twice.

A county system that times out after firing a trigger cannot know whether it fired. Sending the same
``Idempotency-Key`` again makes the retry safe (the IETF draft "The Idempotency-Key HTTP Header Field"):

* the key is 1–255 printable ASCII characters, scoped to the principal (two callers may use the same key),
  and remembered for ``idempotency_ttl_hours`` (24 h);
* the request is identified by a SHA-256 over its method, path and query, ``If-Match`` and body; the same
  key with a different request is a 422 (``api.idempotency_key_reused``): the key was meant for another act;
* while the first request runs, a duplicate gets 409 (``api.idempotency_in_flight``) and may retry later;
* once it has answered, a duplicate gets the stored answer (status, body, ``Content-Type``, ``ETag``,
  ``Location``, ``Content-Language``) with ``Idempotent-Replayed: true``; nothing runs again.

Answers that say the request could not run at all are not stored, so a retry with the same key may run it
once the cause is fixed: 5xx (including a crash), 401, 428, 429 and 503. Every other answer, refusals
included, is the outcome of the act and is replayed.

This is a pure ASGI middleware because it must see the whole response (status, headers and body) to store
it; a dependency cannot. The record is claimed, and later completed, each by a single statement committed on
its own (:meth:`lifecycle.store.db.Database.autocommit`: no ``BEGIN``/``COMMIT`` around it on PostgreSQL), not
in the route's transaction: the claim must be visible to a concurrent duplicate before the route commits.
The claim inserts the record, or takes over an expired one, in one ``INSERT … ON CONFLICT DO UPDATE``; only a
duplicate costs a second statement, to read the record it met (see :mod:`lifecycle.store.idempotency`). The
completion is stored before the last part of the answer is sent, so a client holding the whole answer that
retries gets the replay. If the process dies between the route's commit and the completion, the record
stays ``running`` until it expires, so retries get 409: the safe failure (never a second execution).

A route whose change knows its answer before it commits (firing a trigger of a project, an item or a notice;
creating a project; filing a report) stores it in the change's own transaction instead
(:mod:`lifecycle.services.answers`): it finds the claim with :func:`claim_of`, and once that transaction has
committed, this middleware stores nothing more. Then the change and its answer commit together, and the
completion costs no statement of its own.

On PostgreSQL a trigger's change claims the key as well (``claimed_in_change``): nothing is claimed up
front, the change's transaction holds the key by an advisory lock and inserts the completed record with the
change, so the key costs no statement and no commit of its own. The middleware then holds the route's answer
back until it knows it stands (:meth:`IdempotencyMiddleware._run_claiming`): a change that found the key taken
is answered from the key's record, as a duplicate is above; a request refused before or without a change has
its answer stored by one statement that claims and completes the key at once. One difference shows: while
such a change runs, its key has no record yet, so a request reusing the key for another body gets 409 (in
flight) rather than 422; once the change has answered, 422.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from typing import Any, Final

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import resolve_principal
from api.errors import message, problem_response
from api.i18n import DEFAULT_LANG, Lang
from api.runtime import Runtime
from lifecycle.services.answers import KeyClaim, RenderedAnswer
from lifecycle.store.idempotency import IdempotencyEntry

log = logging.getLogger("lifecycle.api")

HEADER: Final = "idempotency-key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
MAX_BODY_BYTES: Final = 1024 * 1024
"""The largest POST body accepted with an Idempotency-Key (it is stored and hashed whole)."""

CLAIM_STATE: Final = "idempotency_claim"
"""Where a request that claimed its key finds the :class:`~lifecycle.services.answers.KeyClaim` (``request.state``),
to store its answer in the transaction of its change (see :func:`claim_of`)."""

_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")
_REPLAYED_HEADERS: Final = frozenset({"content-type", "etag", "location", "content-language"})
_NOT_STORED: Final = frozenset({401, 428, 429, 503})


def request_hash(method: str, path: str, query: bytes, if_match: str | None, body: bytes) -> str:
    """The fingerprint a key is bound to: method, path and query, If-Match and body."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, (if_match or "").encode(), body):
        digest.update(len(part).to_bytes(8, "big"))  # length-prefixed, so parts cannot run into each other
        digest.update(part)
    return digest.hexdigest()


def claim_of(request: Request) -> KeyClaim | None:
    """The key the request claimed, if it was sent with an ``Idempotency-Key`` this middleware claimed."""
    claim: KeyClaim | None = getattr(request.state, CLAIM_STATE, None)
    return claim


def answer_response(answer: RenderedAnswer) -> Response:
    """An answer as rendered (and, for a claimed key, stored): its status, headers and body, as they are."""
    status, headers, body = answer
    return Response(body, status_code=status, headers=dict(headers))


def valid_key(key: str) -> bool:
    """Whether ``key`` is 1–255 printable ASCII characters (spaces inside allowed, not only spaces)."""
    return bool(_KEY.match(key)) and bool(key.strip())


class IdempotencyMiddleware:
    """Applies ``Idempotency-Key`` to every POST under ``prefix`` (see the module docstring)."""

    def __init__(self, app: ASGIApp, prefix: str = "/api/v1/", claimed_in_change: Sequence[str] = ()) -> None:
        """``claimed_in_change``: the paths (route templates, ``/api/v1/projects/{project_id}/transitions``)
        whose change claims its key in its own transaction where the database can
        (:mod:`lifecycle.services.answers`)."""
        self.app = app
        self.prefix = prefix
        self.claimed_in_change = tuple(compile_path(path)[0] for path in claimed_in_change)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not str(scope["path"]).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = headers.get(HEADER)
        if key is None:
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        lang: Lang = state.get("lang", DEFAULT_LANG)
        if not valid_key(key):
            await self._problem(scope, receive, send, 422, "api.idempotency_key_invalid", lang, _key_error(lang))
            return
        runtime: Runtime = scope["app"].state.runtime
        if not (await runtime.ensure_ready()).ready:
            await self.app(scope, receive, send)  # the route answers 503
            return
        principal = await resolve_principal(runtime.services, state, headers.get("authorization"))
        if principal is None:
            await self.app(scope, receive, send)  # the route answers 401
            return
        body, too_large = await _read_body(receive)
        if too_large:
            await self._problem(scope, receive, send, 413, "api.payload_too_large", lang, {}, limit=MAX_BODY_BYTES)
            return
        fingerprint = request_hash(
            scope["method"], scope["path"], scope.get("query_string", b""), headers.get("if-match"), body
        )
        if self._claimed_by_change(scope, runtime):
            claim = state[CLAIM_STATE] = KeyClaim(principal.id, key, fingerprint, in_transaction=True)
            await self._run_claiming(scope, receive, send, runtime, claim, body, lang)
            return
        async with runtime.services.one_connection():  # claim, change and answer: one checkout
            existing = await runtime.services.idempotency_begin(principal.id, key, fingerprint)
            if existing is None:
                claim = state[CLAIM_STATE] = KeyClaim(principal.id, key)
                await self._run_and_store(scope, receive, send, runtime, claim, body)
                return
        await self._answer_from(scope, receive, send, runtime, existing, fingerprint, lang)

    def _claimed_by_change(self, scope: Scope, runtime: Runtime) -> bool:
        """Whether the request's change claims its key in its own transaction (see the module docstring)."""
        path = str(scope["path"])
        return any(p.match(path) for p in self.claimed_in_change) and runtime.services.claims_in_transaction()

    async def _answer_from(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        runtime: Runtime,
        existing: IdempotencyEntry | None,
        fingerprint: str,
        lang: Lang,
    ) -> None:
        """Answer a request whose key is taken, from the key's record: 422 if it was claimed for another
        request, 409 while that runs (or when there is no record yet: its change has not committed), else
        the stored answer."""
        if existing is not None and existing.request_hash != fingerprint:
            runtime.metrics.refusal("api.idempotency_key_reused")
            await self._problem(scope, receive, send, 422, "api.idempotency_key_reused", lang, {})
        elif existing is None or existing.state != "completed" or existing.status is None:
            runtime.metrics.refusal("api.idempotency_in_flight")
            await self._problem(
                scope, receive, send, 409, "api.idempotency_in_flight", lang, {}, headers={"Retry-After": "1"}
            )
        else:
            await _replay(send, existing.status, existing.headers or (), existing.body or b"")

    async def _run_claiming(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        runtime: Runtime,
        claim: KeyClaim,
        body: bytes,
        lang: Lang,
    ) -> None:
        """Run a request whose change claims its key, holding its answer back until it is known to stand: the
        change committed it with its answer; or the key was taken, and the key's record answers instead; or
        the request was refused before or without a change, and its answer is stored now, claim and answer
        in one statement, unless a record of the key was stored meanwhile, which then answers instead."""
        held: list[Message] = []

        async def hold(msg: Message) -> None:
            held.append(msg)

        await self.app(scope, _body_then(body, receive), hold)  # raising, it has sent nothing and stored nothing
        if not claim.committed:
            try:
                existing = await _settle_unclaimed(runtime, claim, held)
            except Exception:
                # Nothing of the request was committed: unstored, its answer is sent all the same, and a retry
                # runs it again. A key found taken is then answered as in flight: the caller retries later.
                log.exception("idempotency record for principal %s could not be stored", claim.principal_id)
                existing = None
            if claim.taken:
                await self._answer_from(scope, receive, send, runtime, existing, claim.request_hash, lang)
                return
        for msg in held:
            await send(msg)

    async def _run_and_store(
        self, scope: Scope, receive: Receive, send: Send, runtime: Runtime, claim: KeyClaim, body: bytes
    ) -> None:
        principal_id, key = claim.principal_id, claim.key
        settled = False
        status: int | None = None
        kept_headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def capture(msg: Message) -> None:
            nonlocal status, settled
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
                kept_headers.extend(_replayed_headers(msg))
            elif msg["type"] == "http.response.body":
                chunks.append(msg.get("body", b""))
                if not msg.get("more_body", False) and not claim.committed:
                    # Settled before the last part goes out: a client that has the whole answer and retries
                    # gets the replay, never a 409; and the completion holds no connection while the client
                    # has already moved on to its next request.
                    await _settle(runtime, principal_id, key, status, kept_headers, b"".join(chunks))
                    settled = True
            await send(msg)

        try:
            await self.app(scope, _body_then(body, receive), capture)
        except BaseException:
            if not settled and not claim.committed:
                await _settle(runtime, principal_id, key, None, [], b"")
            raise
        if not settled and not claim.committed:  # the app returned without finishing its answer
            await _settle(runtime, principal_id, key, status, kept_headers, b"".join(chunks))

    async def _problem(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        code: str,
        lang: Lang,
        extra: dict[str, Any],
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> None:
        state = scope.get("state", {})
        response = problem_response(
            state.get("request_id"),
            str(scope["path"]),
            lang,
            status,
            code,
            message(code, params, lang),
            extra=extra,
            headers=headers,
        )
        await response(scope, receive, send)


def _body_then(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` for the app: the request's body, read already (here, whole), then whatever the client
    sends next (its disconnect, if it comes)."""
    delivered = False

    async def receive_body() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_body


async def _settle_unclaimed(runtime: Runtime, claim: KeyClaim, held: list[Message]) -> IdempotencyEntry | None:
    """After a request whose change was to claim its key did not commit: the key's live record to answer from
    (``claim.taken`` set), or None with the request's own answer stored when it is worth replaying."""
    services = runtime.services
    status, headers, body = _held_answer(held)
    if not claim.taken and status is not None and status < 500 and status not in _NOT_STORED:
        existing = await services.idempotency_record(
            claim.principal_id, claim.key, claim.request_hash, (status, headers, body)
        )
    else:
        # Taken, or refused in a way not stored (no If-Match…): a key used for another request still says so.
        existing = await services.idempotency_live(claim.principal_id, claim.key)
    claim.taken = claim.taken or existing is not None
    return existing


def _held_answer(held: list[Message]) -> tuple[int | None, list[tuple[str, str]], bytes]:
    """The status, the headers worth replaying and the body of a response held back whole."""
    status: int | None = None
    headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []
    for msg in held:
        if msg["type"] == "http.response.start":
            status = int(msg["status"])
            headers.extend(_replayed_headers(msg))
        elif msg["type"] == "http.response.body":
            chunks.append(msg.get("body", b""))
    return status, headers, b"".join(chunks)


def _replayed_headers(start: Message) -> list[tuple[str, str]]:
    """The headers of a response's start worth replaying with it (lower-case names)."""
    out = []
    for raw_name, raw_value in start.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        if name in _REPLAYED_HEADERS:
            out.append((name, raw_value.decode("latin-1")))
    return out


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole request body, or (partial, True) once it exceeds the limit."""
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            break
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"", True
        chunks.append(chunk)
        if not msg.get("more_body", False):
            break
    return b"".join(chunks), False


async def _replay(send: Send, status: int, headers: Any, body: bytes) -> None:
    raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    raw.append((REPLAYED_HEADER.lower().encode(), b"true"))
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _settle(
    runtime: Runtime, principal_id: str, key: str, status: int | None, headers: list[tuple[str, str]], body: bytes
) -> None:
    """Store the answer, or release the claim when the answer says the request could not run."""
    try:
        if status is None or status >= 500 or status in _NOT_STORED:
            await runtime.services.idempotency_release(principal_id, key)
        else:
            await runtime.services.idempotency_complete(principal_id, key, status, headers, body)
    except Exception:
        # The answer has gone out already; a record left running expires, and retries meanwhile get 409.
        log.exception("idempotency record for principal %s could not be settled", principal_id)


def _key_error(lang: Lang) -> dict[str, Any]:
    zh = "Idempotency-Key 应为 1 至 255 个可打印 ASCII 字符"
    en = "Idempotency-Key must be 1 to 255 printable ASCII characters"
    return {
        "errors": [
            {
                "loc": ["header", "Idempotency-Key"],
                "code": "api.idempotency_key_invalid",
                "message": en if lang == "en" else zh,
                "message_zh": zh,
                "message_en": en,
            }
        ]
    }
