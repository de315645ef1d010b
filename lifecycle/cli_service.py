"""Commands that run and operate the service: ``serve``, ``migrate``, ``tokens``, ``audit``.

``lifecycle serve`` is the one command a newcomer needs: it migrates the database (an SQLite file in the working
directory unless ``LIFECYCLE_DATABASE_URL`` names another), publishes the bundled workflows, creates an admin
token on the very first start and prints it once, and serves the API with uvicorn. Background workers that
belong to the service (the deadline scheduler, the webhook dispatcher) run in the same event loop when they
are installed (see :data:`BACKGROUND`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any

import typer

from lifecycle.services import CallContext, Principal, Services
from lifecycle.settings import Settings
from lifecycle.store import migrate

app = typer.Typer()
tokens = typer.Typer(help="API 令牌：创建、列出、吊销 / API tokens: create, list, revoke.", no_args_is_help=True)
audit = typer.Typer(help="审计：核验事件哈希链 / audit: verify the event hash chains.", no_args_is_help=True)
app.add_typer(tokens, name="tokens")
app.add_typer(audit, name="audit")

log = logging.getLogger("lifecycle.serve")

Starter = Callable[[Services, Settings], Awaitable[Any]]
"""Starts a background worker in the running loop and returns something with an awaitable ``stop()``."""

BACKGROUND: list[tuple[str, str]] = [
    ("lifecycle.scheduler", "start_scheduler"),
    ("lifecycle.webhooks", "start_dispatcher"),
]
"""Background workers ``serve`` runs beside the API, as (module, function); a module that is not installed
is skipped, so the service runs with whatever parts it has."""

ADMIN_PRINCIPAL = "admin"

_CLI_PRINCIPAL = Principal(id="cli", name="命令行 / command line", roles=frozenset({"admin"}))


def _settings() -> Settings:
    return Settings.from_env()


async def _with_services(settings: Settings, work: Callable[[Services], Awaitable[Any]]) -> Any:
    services = Services.from_settings(settings)
    try:
        return await work(services)
    finally:
        await services.close()


def _migrate(settings: Settings) -> None:
    migrate.upgrade_to_head(settings.database_url)


async def _first_start_token(services: Services) -> str | None:
    """On the very first start (no token exists yet), an admin principal and its token; else None."""
    if await services.list_tokens():
        return None
    if await services.get_principal(ADMIN_PRINCIPAL) is None:
        await services.add_principal(ADMIN_PRINCIPAL, "系统管理员 / administrator", ["admin"])
    _, plain = await services.create_token(ADMIN_PRINCIPAL, "created on first start")
    return plain


@app.command("migrate")
def migrate_command(
    downgrade: Annotated[bool, typer.Option("--downgrade-to-base", help="撤销全部迁移 / undo every migration")] = False,
) -> None:
    """把数据库迁移到最新版本 / migrate the database to the newest schema."""
    settings = _settings()
    if downgrade:
        migrate.downgrade_to_base(settings.database_url)
        typer.echo("downgraded to base")
        return
    _migrate(settings)
    typer.echo(f"database at {migrate.head_revision()}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="监听地址 / address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="端口 / port")] = 8000,
    background: Annotated[
        bool, typer.Option("--background/--no-background", help="同时运行调度与推送 / run scheduler and webhooks")
    ] = True,
) -> None:
    """启动服务：迁移数据库、发布内置流程、提供 API / start the service: migrate, publish, serve the API."""
    settings = _settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _migrate(settings)
    _run(_serve(settings, host, port, background))


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run the service's event loop: uvloop when installed (uvicorn[standard] brings it), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(main)
    else:
        uvloop.run(main)


async def _serve(settings: Settings, host: str, port: int, background: bool) -> None:
    import uvicorn

    from api.app import create_app

    services = Services.from_settings(settings)
    try:
        outcomes = await services.publish_bundled(settings.workflows_dir)
        for outcome in outcomes:
            log.info("workflow %s", outcome)
        token = await _first_start_token(services)
        if token is not None:
            # Printed once, on the terminal of whoever started the service; never logged.
            print(
                "\n首次启动：管理员令牌如下（只显示这一次，请妥善保存）\n"
                "First start: the admin token (shown only this once; keep it safe):\n\n"
                f"    {token}\n\n"
                f"    curl -H 'Authorization: Bearer {token}' http://{host}:{port}/api/v1/workflows\n",
                file=sys.stderr,
                flush=True,
            )
        workers = await _start_background(services, settings) if background else []
        app_ = create_app(settings, services=services)
        # access_log off: the app logs each request itself, with its request id (lifecycle.api.access).
        config = uvicorn.Config(
            app_, host=host, port=port, log_level=settings.log_level.lower(), lifespan="on", access_log=False
        )
        try:
            await uvicorn.Server(config).serve()
        finally:
            for worker in reversed(workers):
                await worker.stop()
    finally:
        await services.close()


async def _start_background(services: Services, settings: Settings) -> list[Any]:
    import importlib

    started = []
    for module_name, function in BACKGROUND:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        starter: Starter | None = getattr(module, function, None)
        if starter is not None:
            started.append(await starter(services, settings))
            log.info("started %s.%s", module_name, function)
    return started


# --- tokens -----------------------------------------------------------------------------------------------


@tokens.command("create")
def tokens_create(
    principal: Annotated[str, typer.Option(help="主体编号 / principal id")],
    role: Annotated[list[str], typer.Option(help="角色（可多次）/ role (repeatable), for a new principal")] = [],  # noqa: B006
    name: Annotated[str | None, typer.Option(help="名称 / display name, for a new principal")] = None,
    unit: Annotated[str | None, typer.Option(help="所属单位编号 / org unit id")] = None,
    unit_kind: Annotated[str | None, typer.Option(help="单位类别 / org unit kind")] = None,
    description: Annotated[str, typer.Option(help="用途说明 / what the token is for")] = "",
) -> None:
    """创建令牌（主体不存在时一并创建）；令牌只显示一次 / create a token (and the principal if new); shown once."""

    async def work(services: Services) -> tuple[str, str]:
        if await services.get_principal(principal) is None:
            if not role:
                raise typer.BadParameter("a new principal needs at least one --role", param_hint="--role")
            await services.add_principal(principal, name or principal, role, unit_id=unit, unit_kind=unit_kind)
        return await services.create_token(principal, description)  # type: ignore[no-any-return]

    token_id, plain = asyncio.run(_with_services(_settings(), work))
    typer.echo(f"token id: {token_id}", err=True)
    typer.echo(plain)


@tokens.command("list")
def tokens_list(principal: Annotated[str | None, typer.Option(help="只列此主体 / only this principal")] = None) -> None:
    """列出令牌（不含令牌本身）/ list tokens (never the token itself)."""
    records = asyncio.run(_with_services(_settings(), lambda services: services.list_tokens(principal)))
    for record in records:
        state = f"revoked {record.revoked_at:%Y-%m-%d %H:%M}" if record.revoked_at else "live"
        typer.echo(
            f"{record.id}  {record.principal_id:<20} {record.prefix}…  {record.created_at:%Y-%m-%d %H:%M}Z  "
            f"{state}  {record.description}"
        )


@tokens.command("revoke")
def tokens_revoke(token_id: Annotated[str, typer.Argument(help="令牌编号 / token id")]) -> None:
    """吊销令牌 / revoke a token."""
    revoked = asyncio.run(_with_services(_settings(), lambda services: services.revoke_token(token_id)))
    if not revoked:
        typer.echo(f"no live token {token_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {token_id}")


# --- audit ------------------------------------------------------------------------------------------------


@audit.command("verify")
def audit_verify(
    project: Annotated[str | None, typer.Option(help="只核验此项目 / only this project")] = None,
) -> None:
    """核验每个项目的事件哈希链，列出被修改、删除或重排的记录 / verify every project's event chain."""
    ctx = CallContext(_CLI_PRINCIPAL)
    findings = asyncio.run(_with_services(_settings(), lambda services: services.audit(ctx, project)))
    for finding in findings:
        typer.echo(
            f"{finding.project_id}  seq {finding.seq}  {finding.problem}  event {finding.event_id or '—'}: "
            f"{finding.detail}"
        )
    if findings:
        typer.echo(f"{len(findings)} finding(s)", err=True)
        raise typer.Exit(1)
    typer.echo("事件链完整 / every chain verifies", err=True)
