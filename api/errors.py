"""Errors → HTTP: every error answer is an RFC 9457 ``application/problem+json`` document.

Domain errors (:mod:`lifecycle.errors`) carry no HTTP status; this module alone decides them. A problem has the
RFC 9457 members ``type`` (a stable URI per code), ``title`` (the same for every occurrence of the type),
``status``, ``detail`` (this occurrence, in the request's language) and ``instance`` (the request path), plus
``code`` (the stable problem code integrators match on), ``request_id`` and members that depend on the code:

=================================  ======  ==================================================================
code                               status  extra members
=================================  ======  ==================================================================
engine.gate_not_satisfied          409     ``trigger``, ``gate``, ``unmet`` (every unmet condition)
engine.invalid_transition          409     ``trigger``, ``state``, ``subject``, ``allowed_triggers``
engine.one_time_notice_breach      409     ``task_id``, ``notice_id`` (the notice already issued)
engine.role_refused                403     ``trigger``, ``roles_allowed`` (the YAML's roles)
engine.department_refused          403     ``trigger``, ``roles_allowed``
forbidden                          403     — (may see, may not change: the services' rule)
not_found                          404     ``kind``, ``id`` (also for objects the caller may not see)
stale_version                      412     ``current_etag`` (also sent as the ``ETag`` header)
input.invalid                      422     ``errors`` (each with ``loc``, a field path, and messages)
api.request_invalid                422     ``errors`` (request validation: body, query, path, headers)
api.if_match_invalid               422     ``errors`` (``loc`` = ``["header", "If-Match"]``)
api.idempotency_key_invalid        422     ``errors`` (``loc`` = ``["header", "Idempotency-Key"]``)
api.idempotency_key_reused         422     —
api.idempotency_in_flight          409     — (``Retry-After``)
api.if_match_required              428     —
api.unauthorized                   401     — (``WWW-Authenticate: Bearer realm="lifecycle"``)
api.route_not_found                404     —
api.method_not_allowed             405     —
api.payload_too_large              413     —
api.bad_request                    400     — (a body that cannot be read at all)
api.not_ready                      503     ``reason`` (``Retry-After``)
api.internal_error                 500     — (nothing about the cause; it is logged with the request id)
=================================  ======  ==================================================================

Every document also has ``request_id`` (the ``X-Request-ID`` of the answer). Any other domain error is mapped
by its family: a :class:`~lifecycle.errors.TransitionRefused` is a 409, bad input (``InvalidInput``, a
``ProblemsError``) a 422, anything else a 400.

Starlette looks exception handlers up along the exception's MRO, so one handler for
:class:`~lifecycle.errors.LifecycleError` covers the whole family; the status comes from the code, then from the
family (a refusal we have no entry for is still a 409, bad input still a 422).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from api.i18n import CONTENT_LANGUAGE, Lang, negotiate
from lifecycle.errors import (
    GateNotSatisfied,
    InvalidInput,
    InvalidTransition,
    LifecycleError,
    NotFound,
    OneTimeNoticeBreach,
    Problem,
    ProblemsError,
    RoleRefused,
    StaleVersion,
    TransitionRefused,
)
from lifecycle.messages import CATALOGUE, register, render

log = logging.getLogger("lifecycle.api")

PROBLEM_BASE: Final = "https://lifecycle.local/problems/"
PROBLEM_JSON: Final = "application/problem+json"

register(
    {
        "api.unauthorized": (
            "需要有效的访问令牌（Authorization: Bearer <令牌>）",
            "a valid bearer token is required (Authorization: Bearer <token>)",
        ),
        "api.if_match_required": (
            "修改{kind_zh}须带 If-Match 请求头（先读取，取其 ETag）",
            "changing a {kind_en} needs an If-Match header (read it first and send its ETag)",
        ),
        "api.if_match_invalid": (
            'If-Match 请求头应为 ETag，如 W/"3"',
            'the If-Match header must be an ETag such as W/"3"',
        ),
        "api.request_invalid": ("请求有 {count} 处错误", "the request has {count} error(s)"),
        "api.request_field": ("{message}", "{message}"),
        "api.idempotency_key_invalid": (
            "Idempotency-Key 应为 1 至 255 个可打印 ASCII 字符",
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
        ),
        "api.idempotency_key_reused": (
            "该 Idempotency-Key 已用于另一个请求（方法、路径或内容不同）",
            "this Idempotency-Key was already used for a different request (method, path or body)",
        ),
        "api.idempotency_in_flight": (
            "使用该 Idempotency-Key 的请求仍在处理中，请稍后重试",
            "a request with this Idempotency-Key is still being processed; retry later",
        ),
        "api.route_not_found": ("没有这个接口：{path}", "no such endpoint: {path}"),
        "api.method_not_allowed": ("该接口不支持 {method} 方法", "this endpoint does not support {method}"),
        "api.payload_too_large": (
            "请求体过大（上限 {limit} 字节）",
            "the request body is too large (the limit is {limit} bytes)",
        ),
        "api.bad_request": ("请求无法解析", "the request could not be read"),
        "api.http_error": ("请求失败（{status}）", "the request failed ({status})"),
        "api.internal_error": (
            "服务器内部错误，请稍后重试；如仍失败，请提供请求编号 {request_id}",
            "internal server error; retry later, and quote request id {request_id} if it persists",
        ),
        "api.not_ready": ("服务尚未就绪：{reason}", "the service is not ready: {reason}"),
    }
)

# Short titles, one per problem type (RFC 9457: the title does not change between occurrences).
_TITLES: Final[dict[str, tuple[str, str]]] = {
    "engine.gate_not_satisfied": ("关卡条件未满足", "Gate not satisfied"),
    "engine.invalid_transition": ("当前状态不能执行该操作", "Invalid transition"),
    "engine.one_time_notice_breach": ("违反一次性告知规定", "One-time notice rule breached"),
    "engine.role_refused": ("无权执行该操作", "Role not allowed"),
    "engine.department_refused": ("不属于本部门办理", "Item assigned to another department"),
    "forbidden": ("无权修改", "Forbidden"),
    "not_found": ("未找到", "Not found"),
    "stale_version": ("数据已被修改", "Stale version"),
    "input.invalid": ("输入无效", "Invalid input"),
    "api.request_invalid": ("请求格式无效", "Invalid request"),
    "api.if_match_required": ("缺少 If-Match", "If-Match required"),
    "api.if_match_invalid": ("If-Match 无效", "Invalid If-Match"),
    "api.unauthorized": ("未认证", "Unauthorized"),
    "api.idempotency_key_invalid": ("Idempotency-Key 无效", "Invalid Idempotency-Key"),
    "api.idempotency_key_reused": ("Idempotency-Key 重复使用", "Idempotency-Key reused"),
    "api.idempotency_in_flight": ("请求处理中", "Request in progress"),
    "api.route_not_found": ("没有这个接口", "No such endpoint"),
    "api.method_not_allowed": ("方法不允许", "Method not allowed"),
    "api.payload_too_large": ("请求体过大", "Payload too large"),
    "api.bad_request": ("请求无效", "Bad request"),
    "api.http_error": ("请求失败", "Request failed"),
    "api.internal_error": ("服务器内部错误", "Internal server error"),
    "api.not_ready": ("服务未就绪", "Service not ready"),
}

# Type URIs: stable, readable slugs. Codes not listed get one derived from the code itself.
_SLUGS: Final[dict[str, str]] = {
    "engine.gate_not_satisfied": "gate-not-satisfied",
    "engine.invalid_transition": "invalid-transition",
    "engine.one_time_notice_breach": "one-time-notice-breach",
    "engine.role_refused": "role-refused",
    "engine.department_refused": "department-refused",
    "forbidden": "forbidden",
    "not_found": "not-found",
    "stale_version": "stale-version",
    "input.invalid": "invalid-input",
    "api.request_invalid": "invalid-request",
    "api.if_match_required": "if-match-required",
    "api.if_match_invalid": "if-match-invalid",
    "api.unauthorized": "unauthorized",
    "api.idempotency_key_invalid": "idempotency-key-invalid",
    "api.idempotency_key_reused": "idempotency-key-reused",
    "api.idempotency_in_flight": "idempotency-request-in-flight",
    "api.internal_error": "internal-error",
}

STATUS_BY_CODE: Final[dict[str, int]] = {
    "engine.gate_not_satisfied": 409,
    "engine.invalid_transition": 409,
    "engine.one_time_notice_breach": 409,
    "engine.role_refused": 403,
    "engine.department_refused": 403,
    "forbidden": 403,
    "not_found": 404,
    "stale_version": 412,
    "input.invalid": 422,
    # Answered from the key's record by the idempotency middleware; 409 only if it ever reached a handler.
    "idempotency.key_taken": 409,
}
"""The HTTP status of each domain problem code."""

# Problems raised without a location still concern one request member; name it so that clients can show
# the message next to the right input.
_LOC_BY_CODE: Final[dict[str, tuple[str | int, ...]]] = {
    "engine.comment_required": ("body", "comment"),
    "deficiency.missing_empty": ("body", "data", "missing"),
    "commitment.text_required": ("body", "data", "text"),
    "commitment.unknown": ("body", "data", "commitment_id"),
}

# Chinese for pydantic's request-validation error types (pydantic writes English only). Types not listed
# fall back to a generic message; the English text is pydantic's own.
_PYDANTIC_ZH: Final[dict[str, str]] = {
    "missing": "必填",
    "extra_forbidden": "不允许的字段",
    "json_invalid": "JSON 格式错误",
    "json_type": "应为 JSON",
    "model_attributes_type": "应为 JSON 对象",
    "dict_type": "应为 JSON 对象",
    "list_type": "应为列表",
    "string_type": "应为文本",
    "string_too_short": "文本过短",
    "string_too_long": "文本过长",
    "string_pattern_mismatch": "格式不正确",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "int_from_float": "应为整数",
    "float_type": "应为数字",
    "float_parsing": "应为数字",
    "decimal_type": "应为数字（可写作字符串）",
    "decimal_parsing": "应为数字",
    "decimal_max_digits": "数字位数过多",
    "decimal_max_places": "小数位数过多",
    "decimal_whole_digits": "整数部分位数过多",
    "finite_number": "应为有限数字",
    "bool_type": "应为 true 或 false",
    "bool_parsing": "应为 true 或 false",
    "date_type": "应为日期（YYYY-MM-DD）",
    "date_parsing": "应为日期（YYYY-MM-DD）",
    "date_from_datetime_parsing": "应为日期（YYYY-MM-DD）",
    "date_from_datetime_inexact": "应为日期（YYYY-MM-DD）",
    "greater_than": "数值过小",
    "greater_than_equal": "数值过小",
    "less_than": "数值过大",
    "less_than_equal": "数值过大",
    "literal_error": "取值不在允许范围内",
    "enum": "取值不在允许范围内",
    "too_short": "条目过少",
    "too_long": "条目过多",
    "value_error": "值无效",
    "string_unstorable": "文本不能含空字符（\\0）或无效的 Unicode 字符",
    "uuid_parsing": "应为 UUID",
    "uuid_type": "应为 UUID",
}


class ApiProblem(Exception):
    """An error the API itself raises (auth, headers, idempotency): a code, a status and message params.

    Attributes:
        extra: members added to the problem document.
        headers: headers sent with it (``WWW-Authenticate``, ``ETag``…).
    """

    def __init__(
        self,
        status: int,
        code: str,
        *,
        params: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.params = dict(params or {})
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        super().__init__(f"{status} {code}")


def problem_type(code: str) -> str:
    """The stable type URI of problem ``code``."""
    slug = _SLUGS.get(code) or code.removeprefix("engine.").removeprefix("api.").replace(".", "-").replace("_", "-")
    return PROBLEM_BASE + slug


def problem_title(code: str, lang: Lang) -> str:
    """The short title of problem type ``code``."""
    zh, en = _TITLES.get(code) or CATALOGUE.get(code, (code, code))
    return en if lang == "en" else zh


def request_lang(request: Request) -> Lang:
    """The language chosen for this request (set by the request-context middleware, else negotiated)."""
    lang = getattr(request.state, "lang", None)
    if lang in ("zh", "en"):
        return lang  # type: ignore[no-any-return]
    return negotiate(request.headers.get("accept-language"))


def problem_response(
    request_id: str | None,
    instance: str,
    lang: Lang,
    status: int,
    code: str,
    detail: str,
    *,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The ``application/problem+json`` response for one problem."""
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": problem_title(code, lang),
        "status": status,
        "detail": detail,
        "instance": instance,
        "code": code,
    }
    if request_id:
        body["request_id"] = request_id
    body.update(extra or {})
    all_headers = {"Content-Language": CONTENT_LANGUAGE[lang], **(headers or {})}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=all_headers)


def _respond(
    request: Request,
    status: int,
    code: str,
    detail: str,
    *,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return problem_response(
        getattr(request.state, "request_id", None),
        request.url.path,
        request_lang(request),
        status,
        code,
        detail,
        extra=extra,
        headers=headers,
    )


def message(code: str, params: Mapping[str, Any], lang: Lang) -> str:
    """The catalogue message of ``code`` in ``lang``."""
    zh, en = render(code, dict(params))
    return en if lang == "en" else zh


# --- domain errors ----------------------------------------------------------------------------------------


def status_of(exc: LifecycleError) -> int:
    """The HTTP status of a domain error: by its code, else by its family."""
    code = exc.problems()[0].code if isinstance(exc, RoleRefused) else exc.code
    status = STATUS_BY_CODE.get(code)
    if status is not None:
        return status
    if isinstance(exc, TransitionRefused):
        return 409
    if isinstance(exc, InvalidInput | ProblemsError):
        return 422
    return 400


DEFAULT_INPUT_LOCS: Final[dict[str, tuple[str | int, ...]]] = {}
"""No renaming: a problem at ``data.x`` is at ``body.data.x`` (a trigger's data)."""


def problem_errors(
    problems: Sequence[Problem], lang: Lang, locs: Mapping[str, tuple[str | int, ...]] | None = None
) -> list[dict[str, Any]]:
    """Input problems as ``errors`` entries: a ``loc`` (path in the request), the code and the messages.

    Services locate problems by their path in the input they were given (file ``request``); the request
    may name that member differently, so ``locs`` maps a path's first member to where it is in the request
    (``{"data": ("body", "fields")}`` for a project's fields, ``{"cursor": ("query", "cursor")}`` for a
    list). Unmapped paths are in the body.
    """
    renames = locs or DEFAULT_INPUT_LOCS
    out = []
    for problem in problems:
        where = problem.location
        loc: list[str | int]
        if where is not None and where.file == "request" and where.path:
            head, *rest = where.path
            prefix = renames.get(str(head))
            loc = [*prefix, *rest] if prefix is not None else ["body", *where.path]
        elif where is not None:
            loc = ["body", where.dotted_path]
        else:
            loc = list(_LOC_BY_CODE.get(problem.code, ("body",)))
        entry: dict[str, Any] = {
            "loc": loc,
            "code": problem.code,
            "message": problem.message(lang),
            "message_zh": problem.zh,
            "message_en": problem.en,
        }
        if where is not None and where.file != "request":
            # A problem in an uploaded document (a definition's YAML) says where in it, as `lifecycle validate`.
            entry.update(file=where.file, line=where.line, column=where.column, path=where.dotted_path)
        out.append(entry)
    return out


def _domain_extra(exc: LifecycleError, lang: Lang, request: Request) -> tuple[dict[str, Any], dict[str, str]]:
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(exc, GateNotSatisfied):
        extra["trigger"] = exc.trigger
        extra["gate"] = exc.gate or None  # None: the refusal is the transition's own required fields
        extra["unmet"] = [
            {
                "code": u.code,
                "message": u.en if lang == "en" else u.zh,
                "message_zh": u.zh,
                "message_en": u.en,
                "gate": u.gate or exc.gate or None,
            }
            for u in exc.unmet
        ]
    elif isinstance(exc, InvalidTransition):
        extra["trigger"] = exc.trigger
        extra["state"] = exc.state
        extra["subject"] = exc.subject
        extra["allowed_triggers"] = list(exc.allowed)
    elif isinstance(exc, OneTimeNoticeBreach):
        extra["task_id"] = exc.task
        extra["notice_id"] = exc.notice_id
    elif isinstance(exc, RoleRefused):
        extra["trigger"] = exc.trigger
        extra["roles_allowed"] = list(exc.roles_allowed)
    elif isinstance(exc, NotFound):
        extra["kind"] = exc.kind
        extra["id"] = exc.ident
    elif isinstance(exc, StaleVersion):
        etag = f'W/"{exc.actual}"'
        extra["current_etag"] = etag
        headers["ETag"] = etag
    if isinstance(exc, InvalidInput | ProblemsError) or status_of(exc) == 422:
        locs = getattr(request.scope.get("endpoint"), "input_locations", None)  # see api.deps.input_locations
        extra["errors"] = problem_errors(exc.problems(), lang, locs)
    return extra, headers


async def handle_lifecycle_error(request: Request, exc: Exception) -> Response:
    """A domain error as a problem document (the status table is in the module docstring)."""
    assert isinstance(exc, LifecycleError)
    lang = request_lang(request)
    status = status_of(exc)
    problems = exc.problems()
    code = problems[0].code if isinstance(exc, RoleRefused) else exc.code
    if isinstance(exc, InvalidInput | ProblemsError) and problems:
        # The summary names how many things are wrong; each one is in ``errors``.
        detail = "；".join(p.zh for p in problems) if lang == "zh" else "; ".join(p.en for p in problems)
    else:
        detail = problems[0].message(lang) if problems else code
    extra, headers = _domain_extra(exc, lang, request)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.refusal(code)
    return _respond(request, status, code, detail, extra=extra, headers=headers)


# --- API-level errors -------------------------------------------------------------------------------------


async def handle_api_problem(request: Request, exc: Exception) -> Response:
    """An error raised by the API layer itself."""
    assert isinstance(exc, ApiProblem)
    lang = request_lang(request)
    if exc.code in ("api.unauthorized", "api.if_match_required", "api.idempotency_key_reused"):
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.refusal(exc.code)
    return _respond(
        request, exc.status, exc.code, message(exc.code, exc.params, lang), extra=exc.extra, headers=exc.headers
    )


def _jsonable_loc(loc: Sequence[Any]) -> list[str | int]:
    return [part if isinstance(part, int) else str(part) for part in loc]


def validation_errors(errors: Sequence[Any], lang: Lang) -> list[dict[str, Any]]:
    """pydantic/FastAPI validation errors as ``errors`` entries with field paths (``loc``)."""
    out = []
    for error in errors:
        kind = str(error.get("type", "value_error"))
        en = str(error.get("msg", "invalid value"))
        zh = _PYDANTIC_ZH.get(kind, "值无效")
        out.append(
            {
                "loc": _jsonable_loc(error.get("loc", ())),
                "code": f"request.{kind}",
                "message": en if lang == "en" else zh,
                "message_zh": zh,
                "message_en": en,
            }
        )
    return out


async def handle_request_validation(request: Request, exc: Exception) -> Response:
    """FastAPI's request validation error (body, query, path, header) as a 422 problem with field paths."""
    assert isinstance(exc, RequestValidationError)
    lang = request_lang(request)
    errors = validation_errors(exc.errors(), lang)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.refusal("api.request_invalid")
    return _respond(
        request,
        422,
        "api.request_invalid",
        message("api.request_invalid", {"count": len(errors)}, lang),
        extra={"errors": errors},
    )


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's HTTP errors (unknown route, wrong method, unreadable body) as problem documents."""
    assert isinstance(exc, StarletteHTTPException)
    lang = request_lang(request)
    status = exc.status_code
    headers = dict(exc.headers or {})
    params: dict[str, Any]
    if status == 404:
        code, params = "api.route_not_found", {"path": request.url.path}
    elif status == 405:
        code, params = "api.method_not_allowed", {"method": request.method}
    elif status == 413:
        code, params = "api.payload_too_large", {"limit": "?"}
    elif status == 400:
        code, params = "api.bad_request", {}
    else:
        code, params = "api.http_error", {"status": status}
    if status < 400 or status in (204, 304):
        return Response(status_code=status, headers=headers)
    return _respond(request, status, code, message(code, params, lang), headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(LifecycleError, handle_lifecycle_error)
    app.add_exception_handler(ApiProblem, handle_api_problem)
    app.add_exception_handler(RequestValidationError, handle_request_validation)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
