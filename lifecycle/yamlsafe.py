"""Safe YAML reading for untrusted files, keeping where every value came from.

Administrators edit the workflow and calendar files, so their YAML is input, not code. This module reads it
with PyYAML's *safe* composer only and builds plain Python values itself, which lets it enforce what a
plain ``yaml.safe_load`` cannot:

* a size limit on the file, a depth limit on nesting, and a limit on the number of values after alias
  expansion (the "billion laughs" attack builds a tiny file that expands to billions of nodes);
* only the standard YAML 1.1 tags (no ``!!python/...``, no custom ``!tags``);
* no duplicate mapping keys (PyYAML silently keeps the last one, which hides mistakes);
* a :class:`SourceMap` from each YAML path (``("states", 3, "title")``) to its line and column, so that every
  later error (schema or static check) can name the exact place in the file.

Problems are raised as :class:`YamlProblems`, which carries every problem found (not just the first).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from lifecycle.errors import Location, Problem, YamlProblems

MAX_FILE_BYTES = 1024 * 1024
"""Largest YAML file accepted (1 MiB): major-project.yaml is about 60 KiB."""

MAX_DEPTH = 32
"""Deepest nesting of mappings and sequences accepted."""

MAX_NODES = 100_000
"""Most values a file may expand to, counting every alias use as a full copy."""

_STANDARD_TAGS = frozenset(
    "tag:yaml.org,2002:" + name
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge", "binary")
)

YamlPath = tuple[str | int, ...]

# libyaml's safe composer when PyYAML was built with it (the wheels are): the same node tree with the same
# marks, about ten times faster than the pure-Python one. Both refuse nothing more than plain YAML here;
# every safety check is ours, on the composed nodes.
_SAFE_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class SourceMap:
    """Where each value of a loaded YAML document stands in its file.

    Attributes:
        file: the file name shown in errors.
        marks: YAML path → (line, column), both 1-based.
    """

    file: str
    marks: dict[YamlPath, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[YamlPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: YamlPath) -> Location:
        """The location of ``path``, or of its nearest ancestor that has one (a missing key is reported
        where its mapping starts)."""
        probe = tuple(path)
        while probe not in self.marks and probe:
            probe = probe[:-1]
        line, column = self.marks.get(probe, (1, 1))
        return Location(file=self.file, line=line, column=column, path=tuple(path))

    def locate_key(self, path: YamlPath) -> Location:
        """Where the mapping key that ends ``path`` is written (for an unknown key, the key itself is the
        mistake, not its value); falls back to :meth:`locate`."""
        mark = self.key_marks.get(tuple(path))
        if mark is None:
            return self.locate(path)
        return Location(file=self.file, line=mark[0], column=mark[1], path=tuple(path))


@dataclass(frozen=True)
class LoadedYaml:
    """A YAML document read safely: its plain value and where each part of it came from."""

    data: Any
    source: SourceMap


def load_yaml_file(path: Path | str, *, display_name: str | None = None) -> LoadedYaml:
    """Read ``path`` as untrusted YAML.

    Raises:
        YamlProblems: the file is missing, too large, not UTF-8, not valid YAML, or breaks a limit.
    """
    path = Path(path)
    name = display_name or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise YamlProblems([_problem("yaml.too_large", Location(name, 1, 1, ()), size=size)])
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlProblems(
            [_problem("yaml.unreadable", Location(name, 1, 1, ()), reason=exc.strerror or str(exc))]
        ) from exc
    return load_yaml_bytes(raw, name)


def load_yaml_bytes(raw: bytes | str, name: str = "<input>") -> LoadedYaml:
    """Read a YAML document given as bytes or text (e.g. an HTTP request body) as untrusted YAML.

    Raises:
        YamlProblems: as for :func:`load_yaml_file`.
    """
    if isinstance(raw, bytes):
        if len(raw) > MAX_FILE_BYTES:
            raise YamlProblems([_problem("yaml.too_large", Location(name, 1, 1, ()), size=len(raw))])
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise YamlProblems([_problem("yaml.not_utf8", Location(name, 1, 1, ()), reason=str(exc))]) from exc
    else:
        text = raw
        if len(text.encode("utf-8")) > MAX_FILE_BYTES:
            raise YamlProblems([_problem("yaml.too_large", Location(name, 1, 1, ()), size=len(text))])
    try:
        documents = list(yaml.compose_all(text, Loader=_SAFE_LOADER))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlProblems(
            [
                _problem(
                    "yaml.syntax",
                    Location(name, line, column, ()),
                    reason=f"{exc.problem or ''} {exc.context or ''}".strip(),
                )
            ]
        ) from exc
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML marks nearly every error
        raise YamlProblems([_problem("yaml.syntax", Location(name, 1, 1, ()), reason=str(exc))]) from exc
    if len(documents) > 1:
        raise YamlProblems([_problem("yaml.many_documents", Location(name, 1, 1, ()))])
    if not documents or documents[0] is None:
        raise YamlProblems([_problem("yaml.empty", Location(name, 1, 1, ()))])
    builder = _Builder(name)
    data = builder.build(documents[0], (), 0)
    if builder.problems:
        raise YamlProblems(builder.problems)
    return LoadedYaml(data=data, source=SourceMap(name, builder.marks, builder.key_marks))


def _problem(code: str, location: Location, **params: Any) -> Problem:
    return Problem.of(code, location, **params)


class _Builder:
    """Turns a composed node tree into plain values, checking the limits and recording positions."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.marks: dict[YamlPath, tuple[int, int]] = {}
        self.key_marks: dict[YamlPath, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self.nodes = 0
        self.constructor = SafeConstructor()
        self._too_many_reported = False

    def _where(self, node: Node, path: YamlPath) -> Location:
        return Location(self.name, node.start_mark.line + 1, node.start_mark.column + 1, path)

    def build(self, node: Node, path: YamlPath, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            if not self._too_many_reported:
                self._too_many_reported = True
                self.problems.append(_problem("yaml.too_many_nodes", self._where(node, path), limit=MAX_NODES))
            return None
        if depth > MAX_DEPTH:
            self.problems.append(_problem("yaml.too_deep", self._where(node, path), limit=MAX_DEPTH))
            return None
        # Keep the first mark for a path: an alias used twice must not move the original.
        self.marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if node.tag not in _STANDARD_TAGS:
            self.problems.append(_problem("yaml.tag", self._where(node, path), tag=node.tag))
            return None
        if isinstance(node, ScalarNode):
            try:
                return self.constructor.construct_object(node, deep=True)
            except (yaml.YAMLError, ValueError) as exc:  # ValueError: an impossible date such as 2027-02-30
                self.problems.append(_problem("yaml.scalar", self._where(node, path), reason=str(exc)))
                return None
        if isinstance(node, SequenceNode):
            return [self.build(child, (*path, index), depth + 1) for index, child in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self._build_mapping(node, path, depth)
        return None  # pragma: no cover - the composer yields only these three node kinds

    def _build_mapping(self, node: MappingNode, path: YamlPath, depth: int) -> dict[Any, Any]:
        own_pairs = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        try:
            # Resolves YAML merge keys (<<: *anchor) the way PyYAML's own constructor does: the merged
            # pairs come first and the mapping's own keys may override them.
            self.constructor.flatten_mapping(node)
        except yaml.YAMLError as exc:
            self.problems.append(_problem("yaml.merge", self._where(node, path), reason=str(exc)))
            return {}
        merged_count = len(node.value) - own_pairs
        result: dict[Any, Any] = {}
        explicit: set[Any] = set()
        for index, (key_node, value_node) in enumerate(_pairs(node)):
            if self._too_many_reported:
                break  # past the node limit nothing more is read: later keys would only add noise
            if not isinstance(key_node, ScalarNode):
                self.problems.append(_problem("yaml.complex_key", self._where(key_node, path)))
                continue
            key = self.build(key_node, path, depth + 1)
            if not isinstance(key, str | int) or isinstance(key, bool):
                key = str(key)
            child = (*path, key)
            self.key_marks.setdefault(child, (key_node.start_mark.line + 1, key_node.start_mark.column + 1))
            if index >= merged_count:
                if key in explicit:
                    self.problems.append(_problem("yaml.duplicate_key", self._where(key_node, child), key=key))
                    continue
                explicit.add(key)
            result[key] = self.build(value_node, child, depth + 1)
        return result


def _pairs(node: MappingNode) -> Iterator[tuple[Node, Node]]:
    yield from node.value
