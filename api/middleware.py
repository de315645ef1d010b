"""The outermost middleware: request id, response language, access log, and the last-resort 500.

Every request gets an id: the caller's ``X-Request-ID`` when it is a sane token (so that ids follow a request
across systems), else a fresh one. It is echoed in the response, written in every log line about the request
and put in error documents, so a user quoting it lets an operator find the log.

An exception nothing else handled becomes a 500 ``application/problem+json`` that says nothing about the
cause (no type name, no message, no trace: those can carry data) and the full trace is logged with the id.
This is done here rather than by Starlette's ``ServerErrorMiddleware`` because that one sits outside every user
middleware, so its answer would lack the request id header.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Final

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import message, problem_response
from api.i18n import CONTENT_LANGUAGE, Lang, negotiate

log = logging.getLogger("lifecycle.api")
access_log = logging.getLogger("lifecycle.api.access")

REQUEST_ID_HEADER: Final = "X-Request-ID"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    """Sets ``request.state.request_id`` and ``request.state.lang``, logs each request, turns crashes into 500s."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        offered = headers.get("x-request-id", "")
        request_id = offered if _SANE_ID.match(offered) else uuid.uuid4().hex
        lang = negotiate(headers.get("accept-language"))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["lang"] = lang
        response_started = False
        status = 500
        started = time.perf_counter()

        async def send_with_id(msg: Message) -> None:
            nonlocal response_started, status
            if msg["type"] == "http.response.start":
                response_started = True
                status = int(msg["status"])
                out = MutableHeaders(scope=msg)
                out[REQUEST_ID_HEADER] = request_id
                if "content-language" not in out:
                    out["Content-Language"] = CONTENT_LANGUAGE[lang]
                out.setdefault("Vary", "Accept-Language")
            await send(msg)

        try:
            where = _unstorable_part(scope)
            if where is not None:
                await _refuse_unstorable(scope, receive, send_with_id, request_id, lang, where)
                return
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Only the request id and the route: the exception's text may hold request data.
            log.exception("unhandled error (request %s, %s %s)", request_id, scope.get("method"), scope.get("path"))
            if response_started:
                raise
            response = problem_response(
                request_id,
                str(scope.get("path", "")),
                lang,
                500,
                "api.internal_error",
                message("api.internal_error", {"request_id": request_id}, lang),
            )
            await response(scope, receive, send_with_id)
        finally:
            if access_log.isEnabledFor(logging.INFO):  # the line's parts cost more than the check
                _log_access(scope, status, started, request_id)


def _log_access(scope: Scope, status: int, started: float, request_id: str) -> None:
    route = getattr(scope.get("route"), "path", None) or scope.get("path")
    principal = scope.get("state", {}).get("principal")
    access_log.info(
        "%s %s %s %.1fms request_id=%s principal=%s",
        scope.get("method"),
        route,
        status,
        (time.perf_counter() - started) * 1000,
        request_id,
        getattr(principal, "id", "-"),
    )


def _unstorable_part(scope: Scope) -> str | None:
    """``"path"`` or ``"query"`` when that part of the URL holds a NUL character (``%00``), else None.

    Ids and filters from the URL go into database queries; PostgreSQL refuses NUL in text with an error,
    which must be the client's 422, not a 500. Checked once here for every route.
    """
    if "\x00" in str(scope.get("path", "")):
        return "path"
    query = bytes(scope.get("query_string", b""))
    if b"\x00" in query or b"%00" in query:
        return "query"
    return None


async def _refuse_unstorable(
    scope: Scope, receive: Receive, send: Send, request_id: str, lang: Lang, where: str
) -> None:
    zh, en = "不能含空字符（\\0）", "may not contain NUL characters"
    response = problem_response(
        request_id,
        str(scope.get("path", "")).replace("\x00", "\\0"),
        lang,
        422,
        "api.request_invalid",
        message("api.request_invalid", {"count": 1}, lang),
        extra={
            "errors": [
                {
                    "loc": [where],
                    "code": "request.string_unstorable",
                    "message": en if lang == "en" else zh,
                    "message_zh": zh,
                    "message_en": en,
                }
            ]
        },
    )
    await response(scope, receive, send)
