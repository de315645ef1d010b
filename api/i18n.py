"""The response language: Chinese by default, English when the client prefers it.

County users read Chinese; integrators may ask for English with ``Accept-Language``. The header is parsed as
RFC 9110 §12.5.4 says: a list of language ranges, each with an optional quality ``q`` (0–1, default 1). The
supported language with the highest quality wins; a tie goes to the one listed first; ``q=0`` excludes a
language; ``*`` stands for every supported language not named. When nothing supported is acceptable the
answer is still Chinese (RFC 9110 allows ignoring the header rather than answering 406).
"""

from __future__ import annotations

from typing import Final, Literal

Lang = Literal["zh", "en"]

DEFAULT_LANG: Final[Lang] = "zh"
SUPPORTED: Final[tuple[Lang, ...]] = ("zh", "en")
CONTENT_LANGUAGE: Final[dict[Lang, str]] = {"zh": "zh-CN", "en": "en"}
"""The ``Content-Language`` sent with an answer in each language."""

_MAX_HEADER = 1024  # longer headers are not parsed: nobody needs more, and parsing is linear anyway


def _quality(text: str) -> float | None:
    """The ``q`` parameter value, or None when it is malformed (the range is then ignored)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None


def negotiate(header: str | None) -> Lang:
    """The language to answer in for the ``Accept-Language`` value ``header``."""
    if not header or len(header) > _MAX_HEADER:
        return DEFAULT_LANG
    best: dict[Lang, tuple[float, int]] = {}
    wildcard: tuple[float, int] | None = None
    for position, part in enumerate(header.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        tag = pieces[0].lower()
        if not tag:
            continue
        q: float | None = 1.0
        for param in pieces[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                q = _quality(value.strip())
        if q is None:
            continue
        if tag == "*":
            wildcard = (q, position)
            continue
        primary = tag.split("-", 1)[0]
        for lang in SUPPORTED:
            if primary == lang:
                # The most specific range naming a language decides for it; among equals, keep the highest q.
                previous = best.get(lang)
                if previous is None or q > previous[0]:
                    best[lang] = (q, position)
    if wildcard is not None:
        for lang in SUPPORTED:
            best.setdefault(lang, wildcard)
    acceptable = [(q, -position, lang) for lang, (q, position) in best.items() if q > 0]
    if not acceptable:
        return DEFAULT_LANG
    # Highest quality first; for equal quality the range listed first; then Chinese before English.
    acceptable.sort(key=lambda entry: (entry[0], entry[1], entry[2] == DEFAULT_LANG), reverse=True)
    return acceptable[0][2]
