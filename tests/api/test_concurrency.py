"""32 clients fight over one project for 10 seconds: transitions and field updates, each with the ETag it read.

Every accepted change must be in the history, every refused one must have been told so with 409 (the state
moved under it: the trigger no longer leaves it) or 412 (its If-Match is stale), the history has no gap,
the versions of accepted answers are exactly 2..final with none twice, and the hash chain verifies. Runs on
PostgreSQL (row locks) and SQLite (the database write lock) alike.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter

import anyio
import pytest

from lifecycle.services import CallContext, Services

from .conftest import ADMIN, DISPATCHER, Api

pytestmark = pytest.mark.anyio

CLIENTS = 32
SECONDS = float(os.environ.get("LIFECYCLE_CONCURRENCY_SECONDS", "10"))


async def test_thirty_two_clients_lose_nothing_and_merge_nothing(api: Api, services: Services) -> None:
    project = await api.create()
    path = f"/api/v1/projects/{project['id']}"
    for who in (ADMIN, DISPATCHER):
        await api.auth(who)  # issue the tokens before the clients race for them
    accepted_versions: list[int] = []
    statuses: Counter[int] = Counter()
    unexpected: list[str] = []
    stop_at = time.monotonic() + SECONDS
    counter = iter(range(1, 10**9))

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop_at:
            read = await api.get(path)
            if read.status_code != 200:
                unexpected.append(f"read {read.status_code} {read.text[:200]}")
                continue
            tag = read.headers["ETag"]
            if rng.random() < 0.5:
                trigger = rng.choice(["hold", "resume"])
                response = await api.request(
                    "POST",
                    f"{path}/transitions",
                    DISPATCHER,
                    json={"trigger": trigger, "comment": f"client {seed}"},
                    headers={"If-Match": tag},
                )
            else:
                # A value no other change writes, so every accepted update really changes the project.
                response = await api.request(
                    "PATCH",
                    path,
                    ADMIN,
                    json={"fields": {"investment": str(1000 + next(counter))}},
                    headers={"If-Match": tag},
                )
            statuses[response.status_code] += 1
            if response.status_code == 200:
                accepted_versions.append(int(response.headers["ETag"].strip('W/"')))
            elif response.status_code not in (409, 412):
                unexpected.append(f"{response.status_code} {response.text[:200]}")

    async with anyio.create_task_group() as group:
        for seed in range(CLIENTS):
            group.start_soon(client, seed)

    assert not unexpected, unexpected[:5]
    assert statuses[200] > 0 and statuses[412] > 0, statuses
    print(f"accepted {statuses[200]}, refused {statuses[409]} x 409 + {statuses[412]} x 412")
    final = await api.get(path)
    final_version = int(final.headers["ETag"].strip('W/"'))
    # Each accepted change made exactly one new version; no two answers claim the same one.
    assert sorted(accepted_versions) == list(range(2, final_version + 1))

    history = []
    cursor = None
    while True:
        page = await api.get(f"{path}/history", params={"limit": 200, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        history.extend(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            break
    seqs = [entry["seq"] for entry in history]
    assert seqs == list(range(1, len(seqs) + 1)), "the history has a gap or is out of order"
    # One creation event, then one event per accepted change.
    assert len(history) == 1 + statuses[200]
    kinds = Counter(entry["kind"] for entry in history)
    assert kinds["project.created"] == 1
    assert kinds["project.transition"] + kinds["project.fields_updated"] == statuses[200]

    findings = await services.audit(CallContext(ADMIN), project["id"])
    assert findings == []
