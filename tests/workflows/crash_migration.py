"""Run a migration in this process and kill it, with SIGKILL, in the middle of one project's transaction.

Used by ``test_crash.py`` as a subprocess::

    python -m tests.workflows.crash_migration DATABASE_URL KEY RUN_ID N

runs the migration run ``RUN_ID`` of ``KEY`` and, when the N-th project's move has been written but not yet
committed, kills itself (``kill -9``): no ``finally``, no rollback, no clean close — what a power cut or the
OOM killer does. The database must then show every project either wholly moved or not moved at all.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from lifecycle.engine.core import Engine
from lifecycle.services import CallContext, Principal, Services
from lifecycle.services.workflows import WorkflowAdmin
from lifecycle.store import Database


async def main(url: str, key: str, run_id: str, crash_at: int) -> None:
    services = Services(Database(url), engine=Engine())
    admin = WorkflowAdmin(services)
    ctx = CallContext(Principal("admin", "管理员", roles=frozenset({"admin"})))
    seen = 0

    async def before_commit(project_id: str) -> None:
        nonlocal seen
        seen += 1
        if seen == crash_at:
            print(f"killing myself while {project_id} is written but not committed", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    await admin.run_migration(ctx, key, run_id, before_commit=before_commit)
    print("finished without crashing", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
