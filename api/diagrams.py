"""Procedure diagrams over HTTP: which format the client wants, and the response carrying it.

Two formats, both made on the server without any network access:

* ``svg`` — ``image/svg+xml``, drawn by :func:`lifecycle.spec.svg.render_svg` (a pure-Python layered layout):
  a browser shows it as it is;
* ``mermaid`` — Mermaid ``stateDiagram-v2`` text (:func:`lifecycle.spec.diagram.render_mermaid`), sent as
  ``text/vnd.mermaid`` when the client asked for that type, else ``text/plain``.

The format is ``?format=`` when given, else the first the ``Accept`` header names among ``image/svg+xml``,
``text/vnd.mermaid`` and ``text/plain`` (and ``application/json`` where an endpoint also has a JSON form),
else the endpoint's default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from fastapi import Request, Response

from lifecycle.spec.diagram import render_mermaid
from lifecycle.spec.models import Definition
from lifecycle.spec.svg import render_svg

DiagramFormat = Literal["svg", "mermaid"]
"""The drawn formats."""

DIAGRAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "image/svg+xml": {"schema": {"type": "string"}},
            "text/vnd.mermaid": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
        },
        "description": "SVG or Mermaid text.",
    }
}
"""The 200 answer of a diagram endpoint, for the OpenAPI document."""

_BY_TYPE = (("image/svg+xml", "svg"), ("text/vnd.mermaid", "mermaid"), ("text/plain", "mermaid"))


def wants_format(request: Request, given: str | None, default: str, *, json: bool = False) -> str:
    """The format asked for: ``given`` (the ``format`` query parameter), else the media type the ``Accept``
    header names first among the ones known (``application/json`` too when ``json``), else ``default``."""
    if given is not None:
        return given
    accept = request.headers.get("accept", "").lower()
    known = [*_BY_TYPE, ("application/json", "json")] if json else list(_BY_TYPE)
    found = [(accept.find(media), fmt) for media, fmt in known if media in accept]
    return min(found)[1] if found else default


def diagram_response(
    request: Request,
    definition: Definition,
    fmt: str,
    lang: str,
    *,
    state: str | None = None,
    tasks: Sequence[str] = (),
    caption: str | None = None,
) -> Response:
    """The diagram of ``definition`` (``state`` and ``tasks`` highlighted) in ``fmt`` (svg or mermaid)."""
    headers = {"Content-Language": "en" if lang == "en" else "zh-CN", "Vary": "Accept, Accept-Language"}
    if fmt == "svg":
        svg = render_svg(definition, state, tasks, lang=lang, title=caption)
        return Response(svg, media_type="image/svg+xml", headers=headers)
    text = render_mermaid(definition, state, tasks, lang=lang)
    asked = "text/vnd.mermaid" in request.headers.get("accept", "").lower()
    return Response(text, media_type="text/vnd.mermaid" if asked else "text/plain", headers=headers)
