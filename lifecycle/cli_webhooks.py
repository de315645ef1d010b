"""``lifecycle worker``: the webhook dispatcher as its own process.

Run as many as needed, on as many machines: on PostgreSQL they share the outbox (each claims rows with
``FOR UPDATE SKIP LOCKED`` and leases them); on SQLite they take turns at the database's write lock. A worker
stops cleanly on SIGTERM or SIGINT (it finishes the sends in flight); killed outright, its leased deliveries
are sent again by another worker once the leases run out (``LIFECYCLE_WEBHOOKS_LEASE_SECONDS``).

Configuration: ``LIFECYCLE_DATABASE_URL`` and the ``LIFECYCLE_WEBHOOKS_*`` variables of
:class:`lifecycle.webhooks.config.WebhookSettings`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer

from lifecycle.settings import Settings

app = typer.Typer()

log = logging.getLogger("lifecycle.webhooks")


@app.command()
def worker(
    once: Annotated[
        bool, typer.Option("--once", help="只发送当前到期的消息后退出 / send what is due now, then exit")
    ] = False,
) -> None:
    """运行 Webhook 推送进程 / run the webhook dispatcher (signs, sends, retries the outbox)."""
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_work(settings, once))


async def _work(settings: Settings, once: bool) -> None:
    from lifecycle.clock import SystemClock
    from lifecycle.store import Database
    from lifecycle.webhooks.config import WebhookSettings
    from lifecycle.webhooks.dispatcher import Dispatcher

    database = Database(settings.database_url)
    dispatcher = Dispatcher(database, clock=SystemClock(), settings=WebhookSettings.from_env())
    try:
        if once:
            sent = await dispatcher.run_until_idle()
            typer.echo(f"{sent} attempt(s)", err=True)
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        log.info("webhook worker %s started", dispatcher.worker_id)
        await dispatcher.run(stop)
        log.info("webhook worker %s stopped", dispatcher.worker_id)
    finally:
        await dispatcher.aclose()
        await database.dispose()
