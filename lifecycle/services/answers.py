"""An ``Idempotency-Key``'s answer stored in the transaction of the change it answers.

A request sent with an ``Idempotency-Key`` claims the key before it runs (:mod:`api.idempotency`), and its
answer is stored for retries. Stored after the change's commit, by a statement of its own, a process dying
between the two leaves the key claimed and unanswered: retries get 409 until it expires, and the caller never
learns what happened. A use case that knows its answer before it commits stores it in the same transaction
instead: the change and its answer commit together or not at all, and it costs no statement of its own (the
write rides with the change's, see :mod:`lifecycle.store.deferred`).

The service does not know HTTP: the caller gives a :class:`StoredAnswer`, its claim and how to render the
answer from the project as the change leaves it; the service renders it inside the transaction and marks the
claim committed once the transaction has. The caller then sends exactly the rendered answer, and does not
store it again. When the transaction fails, the claim is left as it was: the caller stores the error answer
it sends, as for any request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .views import ProjectView

RenderedAnswer = tuple[int, tuple[tuple[str, str], ...], bytes]
"""An answer as stored and replayed: status, headers (lower-case names), body."""


@dataclass(eq=False)
class KeyClaim:
    """An ``Idempotency-Key`` the request holds: (principal, key), and its answer once a change has committed
    it in its own transaction."""

    principal_id: str
    key: str
    rendered: RenderedAnswer | None = None
    """The answer the change's transaction stored; only meaningful once :attr:`committed`."""
    committed: bool = False
    """Whether a transaction storing :attr:`rendered` has committed."""

    def answer(self) -> RenderedAnswer | None:
        """The stored answer, if a committed change stored one."""
        return self.rendered if self.committed else None


@dataclass(eq=False)
class StoredAnswer:
    """What a change stores for its request: the claim, and how to render the answer from the project's view
    as the change leaves it (called once, inside the transaction, before its writes are sent)."""

    claim: KeyClaim
    render: Callable[[ProjectView], RenderedAnswer]
    view: ProjectView | None = None
    """The view the answer was rendered from, once it has been (the use case returns it as well)."""
