"""Optimistic concurrency over HTTP: ETags out, If-Match in.

A project's or a task's ETag is its version counter as a weak tag, ``W/"<version>"`` (weak because the
representation may change, e.g. in its language, while the version stays). A change to an existing project
or task must send the ETag it read in ``If-Match``; the version inside is passed to the service as
``expected_version`` and a mismatch is a 412 (:class:`~lifecycle.errors.StaleVersion`).

RFC 9110 compares ``If-Match`` tags strongly; here the tag only carries a version, so ``W/"3"`` and ``"3"``
are the same precondition. Without ``If-Match`` the answer is 428 (RFC 6585): a blind write would silently
undo someone else's change. The wildcard ``*`` is refused for the same reason; so is a list of tags, since a
change applies to one version.
"""

from __future__ import annotations

import re
from typing import Final

from api.errors import ApiProblem
from lifecycle.services.views import etag_of as etag

__all__ = ["etag", "parse_if_match"]

_TAG = re.compile(r'^(?:W/)?"(\d{1,18})"$')
_ERROR_LOC: Final = ["header", "If-Match"]
_KINDS: Final = {"project": ("项目", "project"), "task": ("事项", "task"), "notice": ("补正告知", "notice")}


def parse_if_match(header: str | None, kind: str) -> int:
    """The version named by an ``If-Match`` header.

    Raises:
        ApiProblem: 428 when the header is absent or ``*``; 422 when it is not one ETag of ours.
    """
    if header is None or not header.strip() or header.strip() == "*":
        zh, en = _KINDS.get(kind, (kind, kind))
        raise ApiProblem(428, "api.if_match_required", params={"kind_zh": zh, "kind_en": en})
    match = _TAG.match(header.strip())
    if match is None:
        raise ApiProblem(
            422,
            "api.if_match_invalid",
            extra={
                "errors": [
                    {
                        "loc": _ERROR_LOC,
                        "code": "api.if_match_invalid",
                        "message": 'If-Match: W/"<version>"',
                        "message_zh": 'If-Match 应为 W/"<版本号>"',
                        "message_en": 'If-Match must be W/"<version>"',
                    }
                ]
            },
        )
    return int(match.group(1))
