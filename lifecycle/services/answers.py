"""An ``Idempotency-Key``'s answer stored in the transaction of the change it answers.

A request sent with an ``Idempotency-Key`` claims the key before it runs (:mod:`api.idempotency`), and its
answer is stored for retries. Stored after the change's commit, by a statement of its own, a process dying
between the two leaves the key claimed and unanswered: retries get 409 until it expires, and the caller never
learns what happened. A use case that knows its answer before it commits stores it in the same transaction
instead: the change and its answer commit together or not at all, and it costs no statement of its own (the
write rides with the change's, see :mod:`lifecycle.store.deferred`).

The service does not know HTTP: the caller gives a :class:`StoredAnswer`, its claim and how to render the answer
from the view of what the change acted on (the project, an item, a notice) as the change leaves it; the service
renders it inside the transaction and marks the claim committed once the transaction has. The caller then sends
exactly the rendered answer, and does not store it again. When the transaction fails, the claim is left as it
was: the caller stores the error answer it sends, as for any request.

On PostgreSQL the change may also claim the key itself (:attr:`KeyClaim.in_transaction`), instead of the
caller claiming it up front by a statement committed on its own. The claim then costs neither a statement nor
a commit of its own:

* the statement that locks the project also takes a transaction-level advisory lock on the key
  (:func:`~lifecycle.store.idempotency.claim_lock_key`, with ``pg_try_advisory_xact_lock``, which never
  waits) and reads the key's record, if any. A concurrent duplicate fails to take the advisory lock and is
  told at once (:class:`KeyTaken`), without waiting for the project's lock;
* a live record found (the key answered, or claimed up front by another request) is :class:`KeyTaken` too;
  the caller then reads that record and answers from it once this transaction has rolled back;
* otherwise the answer is inserted as a completed record with the change, by a plain ``INSERT``. Every claim
  statement tries the same advisory lock, so no other request takes the key meanwhile; but a record committed
  between the snapshot of the locking statement and its taking the lock is not seen by it. Such a record makes
  the ``INSERT`` fail, the change rolls back with it, and that is :class:`KeyTaken` as well.

Either way the change, the claim and its answer commit together; a process dying before the commit leaves
nothing behind, so a retry runs the request afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.errors import LifecycleError
from lifecycle.messages import register
from lifecycle.store.idempotency import CLAIM_GUARD, KEY_CONSTRAINT, RECORD_SEEN, IdempotencyRepository, claim_params
from lifecycle.store.projects import ProjectRecord, ProjectRepository

RenderedAnswer = tuple[int, tuple[tuple[str, str], ...], bytes]
"""An answer as stored and replayed: status, headers (lower-case names), body."""


@dataclass(eq=False)
class KeyClaim:
    """An ``Idempotency-Key`` the request holds: (principal, key), and its answer once a change has committed
    it in its own transaction."""

    principal_id: str
    key: str
    request_hash: str = ""
    """The request's fingerprint, stored with the answer when the change claims the key itself."""
    in_transaction: bool = False
    """Whether the change's transaction claims the key (PostgreSQL; see the module docstring) rather than the
    caller, up front."""
    taken: bool = False
    """Set when the change found the key taken (:class:`KeyTaken`): the caller answers from its record."""
    rendered: RenderedAnswer | None = None
    """The answer the change's transaction stored; only meaningful once :attr:`committed`."""
    committed: bool = False
    """Whether a transaction storing :attr:`rendered` has committed."""

    def answer(self) -> RenderedAnswer | None:
        """The stored answer, if a committed change stored one."""
        return self.rendered if self.committed else None


register(
    {
        "idempotency.key_taken": (
            "该 Idempotency-Key 的请求正在处理或已处理",
            "a request with this Idempotency-Key is being or has been handled",
        )
    }
)


class KeyTaken(LifecycleError):
    """The change claiming an ``Idempotency-Key`` in its own transaction found it taken: another request holds
    it right now, or its record is live. Nothing was changed; the caller answers from the key's record."""

    code = "idempotency.key_taken"

    def __init__(self, claim: KeyClaim) -> None:
        claim.taken = True
        self.claim = claim
        super().__init__()


ViewT = TypeVar("ViewT")


@dataclass(eq=False)
class StoredAnswer(Generic[ViewT]):
    """What a change stores for its request: the claim, and how to render the answer from the view of what
    the change acted on (the project, an item, a notice) as the change leaves it (called once, inside the
    transaction, before its writes are sent)."""

    claim: KeyClaim
    render: Callable[[ViewT], RenderedAnswer]
    view: ViewT | None = None
    """The view the answer was rendered from, once it has been (the use case returns it as well)."""

    def committed_view(self) -> ViewT | None:
        """The view the stored answer was rendered from, once the change has committed; marks the claim
        committed (call it right after the transaction has)."""
        self.claim.committed = True
        return self.view


@contextmanager
def key_conflicts_as_taken(claim: KeyClaim | None) -> Iterator[None]:
    """Around a change's transaction: the failure of the key's record insert (:func:`is_key_conflict`) is
    :class:`KeyTaken` (the change rolled back with it)."""
    try:
        yield
    except IntegrityError as error:
        if claim is not None and claim.in_transaction and is_key_conflict(error):
            raise KeyTaken(claim) from error
        raise


async def lock_claiming(
    projects: ProjectRepository,
    project_id: str,
    reads: tuple[ColumnElement[Any], ...],
    claim: KeyClaim,
    now: datetime,
) -> tuple[ProjectRecord | None, tuple[Any, ...]]:
    """Lock the project, read ``reads`` along, and claim ``claim``'s key for this transaction, all in one
    statement (see the module docstring): the project row and the values of ``reads``, or (None, ()) when
    there is no such project.

    Raises:
        KeyTaken: another transaction holds the key, or its record is live.
    """
    record, values = await projects.lock_reading(
        project_id,
        (*reads, RECORD_SEEN),
        guard=CLAIM_GUARD,
        params=claim_params(claim.principal_id, claim.key, now),
    )
    if record is None:
        # No row: no such project, or the guard filtered it out because another transaction holds the key.
        if await projects.get(project_id) is not None:
            raise KeyTaken(claim)
        return None, ()
    *read, seen = values
    if seen in ("running", "completed"):
        raise KeyTaken(claim)
    if seen == "expired":  # rare: the key was used more than its lifetime ago; its record makes way
        await IdempotencyRepository(projects.session).drop_expired(claim.principal_id, claim.key, now)
    return record, tuple(read)


async def store_answer(
    session: AsyncSession, answer: StoredAnswer[ViewT], view: ViewT, now: datetime, ttl: timedelta
) -> None:
    """Render the request's answer from ``view`` (what the change acted on, as the change leaves it), and
    store it for the key in this transaction: as the completed record of a key the transaction claimed itself
    (held back to ride with the change's writes; a record inserted meanwhile fails the change,
    :func:`is_key_conflict`), else on the claim's running record."""
    claim = answer.claim
    answer.view = view
    claim.rendered = rendered = answer.render(view)
    records = IdempotencyRepository(session)
    if claim.in_transaction:
        await records.insert_answered(claim.principal_id, claim.key, claim.request_hash, rendered, now, ttl)
    else:
        status, headers, body = rendered
        await records.store_answer(claim.principal_id, claim.key, status, headers, body, now)


def is_key_conflict(error: IntegrityError) -> bool:
    """Whether ``error`` is a key's record inserted by :func:`store_answer` meeting one stored meanwhile."""
    return getattr(error.orig, "constraint_name", None) == KEY_CONSTRAINT
