"""Workflow administration on the command line: ``lifecycle publish`` and ``lifecycle workflow ...``.

* ``lifecycle publish FILE...`` validates each definition file exactly as ``lifecycle validate`` does and
  publishes it as the next version of its key (active at once unless ``--stage``), printing the version and a
  summary of what changed since the key's active version (``--diff`` prints the whole diff). Content that is
  already a version publishes nothing. ``lifecycle publish --bundled`` does this for every file of the
  workflows folder: the service publishes the bundled files only as the *first* version of a key at start-up,
  never an edited file silently — publishing an edit is this explicit command.
* ``lifecycle workflow versions KEY`` lists the versions (active, projects on each); ``workflow diff KEY``
  prints what changed between two versions in Chinese (``--lang en``); ``workflow activate KEY VERSION``
  makes a version the one new projects start on.
* ``lifecycle workflow migrate KEY --from N [--to M] [--map old=new]... [--project ID]... [--state S]...
  [--unit U]... [--dry-run]`` moves running projects to another version, one transaction per project, printing
  each project's outcome; ``--resume RUN_ID`` continues a run that was interrupted (killed, crashed), and
  ``workflow migration KEY RUN_ID`` shows a run's progress.

The commands act as the administrator ``--by`` (default ``cli``) on the database of ``LIFECYCLE_DATABASE_URL``.
Exit codes: 0 done; 1 an invalid definition or a refused request (the problems are printed); 2 a usage error.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from lifecycle.cli_definitions import definition_files, format_problem, workflows_dir
from lifecycle.errors import LifecycleError
from lifecycle.services import CallContext, Principal, Services
from lifecycle.services.workflows import (
    MigrationPreview,
    MigrationRequest,
    MigrationRunView,
    PublishResult,
    WorkflowAdmin,
)
from lifecycle.settings import Settings
from lifecycle.spec.diff import render_text
from lifecycle.store.workflows import OutcomeRecord

app = typer.Typer()
workflow = typer.Typer(
    help="流程定义管理：版本、比较、启用、迁移在办项目 / workflow administration: versions, diff, activate, migrate.",
    no_args_is_help=True,
)
app.add_typer(workflow, name="workflow")

T = TypeVar("T")

ByOption = Annotated[str, typer.Option("--by", help="记为操作人的管理员编号 / the administrator recorded as author.")]
LangOption = Annotated[str, typer.Option("--lang", help="zh 或 en / language of the output.")]


def _context(by: str, lang: str = "zh") -> CallContext:
    return CallContext(Principal(id=by, name=by, roles=frozenset({"admin"})), lang=lang)


def _run(work: Callable[[WorkflowAdmin], Awaitable[T]]) -> T:
    """Run ``work`` on the configured database; print a refused request's problems and exit 1."""

    async def main() -> T:
        services = Services.from_settings(Settings.from_env())
        try:
            return await work(WorkflowAdmin(services))
        finally:
            await services.close()

    try:
        return asyncio.run(main())
    except LifecycleError as error:
        for problem in error.problems():
            where = problem.location
            if where is not None and where.file == "request":  # an option, not a place in a file
                typer.echo(f"{where.dotted_path}: {problem.code}: {problem.zh} / {problem.en}", err=True)
            else:
                typer.echo(format_problem(problem), err=True)
        raise typer.Exit(1) from None


def _publish_line(result: PublishResult, lang: str) -> str:
    version = result.version.version if result.version else None
    if result.status == "published":
        active = "（已启用）" if result.version and result.version.active else "（未启用，待 workflow activate）"
        head = f"{result.key}: 第 {version} 版已发布{active} / version {version} published"
    elif result.status == "unchanged":
        head = f"{result.key}: 内容与第 {version} 版相同，未发布新版本 / same content as version {version}: nothing new"
    elif version is not None:
        head = f"{result.key}: 校验通过，内容与第 {version} 版相同 / valid, same content as version {version}"
    else:
        head = f"{result.key}: 校验通过 / valid"
    if result.diff is not None:
        base = result.compared_with
        head += f"\n  与第 {base} 版相比 / against version {base}: {result.diff['summary_line']}"
    return head


@app.command()
def publish(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="FILE", exists=True, dir_okay=False, help="定义文件 / definition files.", show_default=False
        ),
    ] = None,
    bundled: Annotated[
        bool, typer.Option("--bundled", help="发布 workflows 目录中的全部定义 / every file of the workflows folder.")
    ] = False,
    stage: Annotated[
        bool, typer.Option("--stage", help="只发布不启用 / publish without activating (activate later).")
    ] = False,
    note: Annotated[str | None, typer.Option("--note", help="修订说明 / change note.", show_default=False)] = None,
    validate_only: Annotated[
        bool, typer.Option("--validate-only", help="只校验并比较，不保存 / check and compare only.")
    ] = False,
    show_diff: Annotated[bool, typer.Option("--diff", help="打印完整差异 / print the whole diff.")] = False,
    workflows: Annotated[
        Path | None,
        typer.Option(
            "--workflows", file_okay=False, help="--bundled 所用目录 / folder for --bundled.", show_default=False
        ),
    ] = None,
    by: ByOption = "cli",
    lang: LangOption = "zh",
) -> None:
    """发布流程定义的新版本 / Publish new definition versions (validated; identical content publishes nothing)."""
    chosen = [(path, note) for path in files or []]
    if bundled:
        chosen.extend((path, note or f"bundled {path.name}") for path in definition_files(workflows_dir(workflows)))
    if not chosen:
        raise typer.BadParameter("给出定义文件或 --bundled / give FILEs or --bundled", param_hint="FILE")

    async def work(admin: WorkflowAdmin) -> list[PublishResult]:
        ctx = _context(by, lang)
        return [
            await admin.publish_file(ctx, path, change_note=text, activate=not stage, validate_only=validate_only)
            for path, text in chosen
        ]

    for result in _run(work):
        typer.echo(_publish_line(result, lang))
        if show_diff and result.diff is not None:
            typer.echo(result.diff["text"], nl=False)


@workflow.command("versions")
def versions(key: Annotated[str, typer.Argument(help="定义键 / definition key.")], by: ByOption = "cli") -> None:
    """列出版本 / List a definition's versions (active, projects on each)."""
    records = _run(lambda admin: admin.versions(_context(by), key))
    for v in records:
        mark = "*" if v.active else " "
        typer.echo(
            f"{mark} {v.version:>3}  {v.published_at:%Y-%m-%d %H:%M}Z  {v.published_by:<12} {v.projects:>5} 个项目  "
            f"{v.content_hash[:19]}  {v.change_note or ''}"
        )


@workflow.command("diff")
def diff(
    key: Annotated[str, typer.Argument(help="定义键 / definition key.")],
    from_version: Annotated[int | None, typer.Option("--from", help="旧版本（默认：新版本的前一版）")] = None,
    to_version: Annotated[int | None, typer.Option("--to", help="新版本（默认：最新版）")] = None,
    lang: LangOption = "zh",
    by: ByOption = "cli",
) -> None:
    """比较两个版本 / Print what changed between two versions."""
    result = _run(lambda admin: admin.diff(_context(by, lang), key, from_version, to_version))
    typer.echo(render_text(result, lang), nl=False)


@workflow.command("activate")
def activate(
    key: Annotated[str, typer.Argument(help="定义键 / definition key.")],
    version: Annotated[int, typer.Argument(help="版本号 / version.")],
    by: ByOption = "cli",
) -> None:
    """启用一个版本：此后新建项目使用该版本 / Make a version the one new projects start on."""
    view = _run(lambda admin: admin.activate(_context(by), key, version))
    typer.echo(f"{view.key}: 第 {view.version} 版已启用 / version {view.version} is active")


def _state_map(pairs: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise typer.BadParameter(f"应为 旧状态=新状态 / expected old=new, got {pair!r}", param_hint="--map")
        mapping[old.strip()] = new.strip()
    return mapping


def _outcome_line(outcome: OutcomeRecord) -> str:
    target = f" → {outcome.to_state}" if outcome.to_state else ""
    line = f"{outcome.seq:>5}  {outcome.project_id}  {outcome.status:<8} {outcome.from_state}{target}"
    for blocker in outcome.blockers:
        line += f"\n         - {blocker.get('message_zh')}"
    return line


def _print_run(run: MigrationRunView) -> None:
    counts = run.counts
    typer.echo(
        f"迁移 {run.id}：{run.key} 第 {run.from_version} 版 → 第 {run.to_version} 版，{run.status}；"
        f"已迁移 {counts['migrated']}，受阻 {counts['blocked']}，跳过 {counts['skipped']}，"
        f"待处理 {counts['pending']} / "
        f"migrated {counts['migrated']}, blocked {counts['blocked']}, skipped {counts['skipped']}, "
        f"pending {counts['pending']}"
    )


def _print_preview(preview: MigrationPreview) -> None:
    for item in preview.items:
        verdict = "可迁移 / movable" if item.movable else "受阻 / blocked"
        target = f" → {item.to_state}" if item.to_state else ""
        typer.echo(f"{item.project_id}  {verdict}  {item.from_state}{target}  {item.name}")
        for blocker in item.blockers:
            typer.echo(f"    - {blocker.message_zh}")
        if item.opened_tasks:
            typer.echo(f"    + 新开事项 / opens: {', '.join(item.opened_tasks)}")
    typer.echo(
        f"共 {preview.total} 个项目：可迁移 {preview.movable}，受阻 {preview.blocked}；"
        f"已在目标版本 {preview.already_on_target} / "
        f"{preview.total} project(s): {preview.movable} movable, {preview.blocked} blocked"
    )
    if preview.suggested_state_map:
        pairs = " ".join(f"--map {old}={new}" for old, new in preview.suggested_state_map.items())
        typer.echo(f"疑为更名的状态，可加 / states that look renamed: {pairs}")


@workflow.command("migrate")
def migrate(
    key: Annotated[str, typer.Argument(help="定义键 / definition key.")],
    from_version: Annotated[int | None, typer.Option("--from", help="项目当前所在版本 / source version.")] = None,
    to_version: Annotated[int | None, typer.Option("--to", help="目标版本（默认：启用版本）/ target.")] = None,
    mapping: Annotated[list[str] | None, typer.Option("--map", help="旧状态=新状态（可多次）/ old=new.")] = None,
    project: Annotated[list[str] | None, typer.Option("--project", help="只迁移这些项目 / only these.")] = None,
    state: Annotated[list[str] | None, typer.Option("--state", help="只迁移这些状态的项目 / only in these.")] = None,
    unit: Annotated[list[str] | None, typer.Option("--unit", help="只迁移这些单位的项目 / only of these.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="只预演，不保存 / say who can move; store nothing.")
    ] = False,
    resume: Annotated[str | None, typer.Option("--resume", help="继续一次中断的迁移 / continue a run.")] = None,
    by: ByOption = "cli",
) -> None:
    """迁移在办项目到另一版本 / Move running projects to another version (one transaction per project)."""
    ctx = _context(by)

    def progress(outcome: OutcomeRecord) -> None:
        typer.echo(_outcome_line(outcome))
        sys.stdout.flush()

    if resume is not None:
        run = _run(lambda admin: admin.run_migration(ctx, key, resume, progress=progress))
        _print_run(run)
        return
    if from_version is None:
        raise typer.BadParameter("需要 --from（或 --resume）/ --from is required (or --resume)", param_hint="--from")
    request = MigrationRequest(
        from_version=from_version,
        to_version=to_version,
        state_map=_state_map(mapping or []),
        project_ids=project or None,
        states=state or None,
        units=unit or None,
    )
    if dry_run:
        _print_preview(_run(lambda admin: admin.preview_migration(ctx, key, request)))
        return

    async def work(admin: WorkflowAdmin) -> MigrationRunView:
        started = await admin.start_migration(ctx, key, request)
        typer.echo(f"迁移 / run {started.id}：{started.total} 个项目 / project(s)")
        sys.stdout.flush()
        return await admin.run_migration(ctx, key, started.id, progress=progress)

    _print_run(_run(work))


@workflow.command("migration")
def migration(
    key: Annotated[str, typer.Argument(help="定义键 / definition key.")],
    run_id: Annotated[str, typer.Argument(help="迁移编号 / run id.")],
    by: ByOption = "cli",
) -> None:
    """查看一次迁移的进度 / Show a migration run's progress and outcomes."""
    run = _run(lambda admin: admin.migration(_context(by), key, run_id))
    for outcome in run.outcomes:
        record = OutcomeRecord(
            run_id=run.id,
            project_id=outcome.project_id,
            seq=outcome.seq,
            status=outcome.status,
            from_state=outcome.from_state,
            to_state=outcome.to_state,
            blockers=outcome.blockers,
            detail=outcome.detail,
            updated_at=outcome.updated_at,
        )
        typer.echo(_outcome_line(record))
    _print_run(run)
