"""The domain error hierarchy: each error is raised by one part of the system and carries the object at fault.

No HTTP status lives here; ``api/`` maps these families to responses. Every user-facing message exists in
Chinese (the default for county users) and English, built from the catalogue in :mod:`lifecycle.messages`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lifecycle.messages import render


@dataclass(frozen=True)
class Location:
    """A place in a definition file: file name, 1-based line and column, and the YAML path."""

    file: str
    line: int
    column: int
    path: tuple[str | int, ...] = ()

    @property
    def dotted_path(self) -> str:
        """The YAML path as ``states[3].title``."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out or "$"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column} ({self.dotted_path})"


@dataclass(frozen=True)
class Problem:
    """One thing wrong, with a stable code, messages in Chinese and English, and where it is (if anywhere)."""

    code: str
    zh: str
    en: str
    location: Location | None = None
    params: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, code: str, location: Location | None = None, **params: Any) -> Problem:
        """Build the problem ``code`` with its catalogue messages filled from ``params``."""
        zh, en = render(code, params)
        return cls(code=code, zh=zh, en=en, location=location, params=params)

    def message(self, lang: str = "zh") -> str:
        """The message in ``lang`` ("zh" or "en")."""
        return self.en if lang == "en" else self.zh

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}[{self.code}] {self.zh} / {self.en}"


class LifecycleError(Exception):
    """Root of every error the lifecycle system raises on purpose."""

    code = "lifecycle.error"

    def problems(self) -> list[Problem]:
        """The individual problems this error reports (at least one)."""
        return [Problem.of(self.code, **self.params())]

    def params(self) -> dict[str, Any]:
        return {}

    def __str__(self) -> str:
        return "; ".join(str(p) for p in self.problems())


class ProblemsError(LifecycleError):
    """An error that is a list of problems found together."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self._problems = list(problems)
        super().__init__(str(self))

    def problems(self) -> list[Problem]:
        return list(self._problems)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self._problems)


class YamlProblems(ProblemsError):
    """Raised by :mod:`lifecycle.yamlsafe` when a file is not acceptable YAML (syntax, limits, tags)."""


class DefinitionError(ProblemsError):
    """Raised by the spec loader when a definition file breaks the schema or a static check.

    Holds every problem of the file, each with its location.
    """


# --- runtime errors raised by the engine ---------------------------------------------------------------


@dataclass(frozen=True)
class Unmet:
    """One unmet condition of a gate: a stable code, its messages, and the gate it belongs to."""

    code: str
    zh: str
    en: str
    gate: str | None = None
    params: dict[str, Any] = field(default_factory=dict, compare=False)


class TransitionRefused(LifecycleError):
    """Base of the refusals the engine raises when a trigger may not fire."""


class GateNotSatisfied(TransitionRefused):
    """Raised by the engine when a trigger's gate has unmet conditions; ``unmet`` lists **every** one."""

    code = "engine.gate_not_satisfied"

    def __init__(self, trigger: str, gate: str, gate_title: str, unmet: Sequence[Unmet]) -> None:
        self.trigger = trigger
        self.gate = gate
        self.gate_title = gate_title
        self.unmet = list(unmet)
        super().__init__(str(self))

    def params(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "gate": self.gate_title, "count": len(self.unmet)}


class InvalidTransition(TransitionRefused):
    """Raised by the engine when a trigger does not exist or does not leave the current state.

    ``allowed`` lists the triggers that do leave it.
    """

    code = "engine.invalid_transition"

    def __init__(self, trigger: str, state: str, allowed: Sequence[str], subject: str = "project") -> None:
        self.trigger = trigger
        self.state = state
        self.allowed = list(allowed)
        self.subject = subject
        super().__init__(str(self))

    def params(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "state": self.state, "allowed": ", ".join(self.allowed) or "—"}


class RoleRefused(TransitionRefused):
    """Raised by the engine when the actor lacks every role the YAML allows for a trigger, or acts on a
    task assigned to another department."""

    code = "engine.role_refused"

    def __init__(self, trigger: str, roles_allowed: Sequence[str], reason: str = "role") -> None:
        self.trigger = trigger
        self.roles_allowed = list(roles_allowed)
        self.reason = reason
        super().__init__(str(self))

    def problems(self) -> list[Problem]:
        code = "engine.department_refused" if self.reason == "department" else self.code
        return [Problem.of(code, **self.params())]

    def params(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "roles": ", ".join(self.roles_allowed)}


class InvalidInput(LifecycleError):
    """Raised when data passed with a trigger or a use case is wrong (missing required fields, unknown
    materials, a cure date after the item's due date…). Holds every problem found."""

    code = "input.invalid"

    def __init__(self, problems: Iterable[Problem]) -> None:
        self._problems = list(problems)
        super().__init__(str(self))

    def problems(self) -> list[Problem]:
        return list(self._problems)

    def __str__(self) -> str:
        return "; ".join(str(p) for p in self._problems)


class OneTimeNoticeBreach(TransitionRefused):
    """Raised by the engine when a second deficiency notice is attempted for the same submission: the
    一次性告知 rule (行政许可法 Art. 32) allows exactly one notice listing everything missing."""

    code = "engine.one_time_notice_breach"

    def __init__(self, task: str, notice_id: str) -> None:
        self.task = task
        self.notice_id = notice_id
        super().__init__(str(self))

    def params(self) -> dict[str, Any]:
        return {"task": self.task, "notice": self.notice_id}


class NotFound(LifecycleError):
    """Raised when a named object (project, task, definition, notice…) does not exist or is not visible."""

    code = "not_found"

    def __init__(self, kind: str, ident: str) -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(str(self))

    def params(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.ident}


class StaleVersion(LifecycleError):
    """Raised by services when the caller's expected version (If-Match) is not the row's current one."""

    code = "stale_version"

    def __init__(self, kind: str, ident: str, expected: str, actual: str) -> None:
        self.kind = kind
        self.ident = ident
        self.expected = expected
        self.actual = actual
        super().__init__(str(self))

    def params(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.ident, "expected": self.expected, "actual": self.actual}


class Forbidden(LifecycleError):
    """Raised by services when the caller may see an object but not change it in this way (a department
    updating a project's header, a viewer creating a project, a unit acting for another unit…).

    ``action`` names what was refused (``update``, ``create``, ``fire``…). Its messages are registered by
    :mod:`lifecycle.services.authz`, the module that raises it.
    """

    code = "forbidden"

    def __init__(self, kind: str, ident: str, action: str) -> None:
        self.kind = kind
        self.ident = ident
        self.action = action
        super().__init__(str(self))

    def params(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.ident, "action": self.action}
