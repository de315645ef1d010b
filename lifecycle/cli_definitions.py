"""Definition tools of the ``lifecycle`` command line: ``validate``, ``diagram`` and ``explain``.

* ``lifecycle validate PATH...`` checks definition files (a directory means every ``*.yaml`` directly in it,
  except schema files) and prints ``OK file (key, N states, M transitions)`` for each valid file and every
  problem of every invalid one, one per line, as ``file:line:column: code: 中文消息 / English message
  (yaml.path)``; ``--json`` prints the problems as a JSON array instead.
* ``lifecycle diagram FILE_OR_KEY`` prints the project machine as a Mermaid ``stateDiagram-v2``
  (:func:`lifecycle.spec.diagram.render_mermaid`).
* ``lifecycle explain FILE_OR_KEY`` prints a readable Chinese (or English) explanation
  (:func:`lifecycle.spec.explain.explain_definition`).

``FILE_OR_KEY`` is a path when such a file exists, else a definition key looked up among the ``*.yaml`` files
of the workflows directory: ``--workflows DIR``, else the environment variable ``LIFECYCLE_WORKFLOWS_DIR``,
else the ``workflows/`` directory bundled next to the ``lifecycle`` package.

Exit codes: 0 all valid; 1 a definition has problems; 2 a usage error (missing path, unknown key or state).
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

import lifecycle
from lifecycle.errors import DefinitionError, Problem, YamlProblems
from lifecycle.spec.diagram import render_mermaid
from lifecycle.spec.explain import Block, Heading, Line, explain_blocks, render_plain
from lifecycle.spec.loader import LoadedDefinition, load_definition_file

__all__ = [
    "WORKFLOWS_ENV",
    "DefinitionNotFound",
    "app",
    "bundled_workflows_dir",
    "definition_files",
    "format_problem",
    "problem_record",
    "resolve_definition",
    "workflows_dir",
]

WORKFLOWS_ENV = "LIFECYCLE_WORKFLOWS_DIR"
"""The environment variable naming the workflows directory that keys are looked up in."""

app = typer.Typer()


class ProblemLanguage(StrEnum):
    """The language(s) problems are printed in."""

    zh = "zh"
    en = "en"
    both = "both"


class Language(StrEnum):
    """The language of a diagram or an explanation."""

    zh = "zh"
    en = "en"


class DefinitionNotFound(LookupError):
    """Raised by :func:`resolve_definition` when ``FILE_OR_KEY`` is neither a file nor a known key."""

    def __init__(self, file_or_key: str, directory: Path, known: list[str]) -> None:
        self.file_or_key = file_or_key
        self.directory = directory
        self.known = known
        listed = ", ".join(known) or "—"
        super().__init__(
            f"找不到文件或定义键 “{file_or_key}”（在 {directory} 中查找；已有的键：{listed}） / "
            f"no file or definition key '{file_or_key}' (looked in {directory}; keys there: {listed})"
        )


# --- finding definitions ----------------------------------------------------------------------------------


def bundled_workflows_dir() -> Path:
    """The ``workflows/`` directory that ships next to the ``lifecycle`` package."""
    return Path(lifecycle.__file__).resolve().parent.parent / "workflows"


def workflows_dir(override: Path | None = None) -> Path:
    """The directory keys are looked up in: ``override``, else ``$LIFECYCLE_WORKFLOWS_DIR``, else the bundled
    one."""
    if override is not None:
        return override
    from_env = os.environ.get(WORKFLOWS_ENV)
    return Path(from_env) if from_env else bundled_workflows_dir()


def definition_files(directory: Path) -> list[Path]:
    """The definition files directly in ``directory``: ``*.yaml``, sorted, without schema files
    (``schema.yaml``, ``*.schema.yaml``) and sub-folders (``calendars/``), as the loader reads them."""
    return [
        path
        for path in sorted(directory.glob("*.yaml"))
        if path.is_file() and path.stem != "schema" and not path.name.endswith(".schema.yaml")
    ]


def resolve_definition(file_or_key: str, workflows: Path | None = None) -> LoadedDefinition:
    """Load the definition ``file_or_key`` names: the file, if it exists; else the file of the workflows
    directory (see :func:`workflows_dir`) whose definition has that key. ``<key>.yaml`` is tried first; other
    files that fail to load are skipped while searching.

    Raises:
        DefinitionNotFound: no such file and no such key.
        YamlProblems, DefinitionError: the file named (or ``<key>.yaml``) is not a valid definition.
    """
    path = Path(file_or_key)
    if path.is_file():
        return load_definition_file(path)
    directory = workflows_dir(workflows)
    files = definition_files(directory) if directory.is_dir() else []
    named = directory / f"{file_or_key}.yaml"
    if named in files:
        loaded = load_definition_file(named)
        if loaded.definition.key == file_or_key:
            return loaded
    known: list[str] = []
    for candidate in files:
        try:
            loaded = load_definition_file(candidate)
        except (YamlProblems, DefinitionError):
            continue
        if loaded.definition.key == file_or_key:
            return loaded
        known.append(loaded.definition.key)
    raise DefinitionNotFound(file_or_key, directory, sorted(set(known)))


# --- printing problems ------------------------------------------------------------------------------------


def format_problem(problem: Problem, lang: str = "both", file: str | None = None) -> str:
    """One problem on one line: ``file:line:column: code: 中文消息 / English message (yaml.path)``.

    ``lang`` is ``zh``, ``en`` or ``both``; ``file`` is shown when the problem has no location.
    """
    location = problem.location
    where = f"{location.file}:{location.line}:{location.column}" if location else (file or "-")
    if lang == "zh":
        message = problem.zh
    elif lang == "en":
        message = problem.en
    else:
        message = f"{problem.zh} / {problem.en}"
    path = f" ({location.dotted_path})" if location and location.path else ""
    return f"{where}: {problem.code}: {message}{path}"


def problem_record(problem: Problem, file: str | None = None) -> dict[str, Any]:
    """A problem as a JSON object: ``file``, ``line``, ``column``, ``path`` (dotted YAML path or null),
    ``code``, ``zh``, ``en``."""
    location = problem.location
    return {
        "file": location.file if location else file,
        "line": location.line if location else None,
        "column": location.column if location else None,
        "path": location.dotted_path if location and location.path else None,
        "code": problem.code,
        "zh": problem.zh,
        "en": problem.en,
    }


def _print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        typer.echo(format_problem(problem), err=True)


def _load_or_exit(file_or_key: str, workflows: Path | None) -> LoadedDefinition:
    try:
        return resolve_definition(file_or_key, workflows)
    except DefinitionNotFound as exc:
        raise typer.BadParameter(str(exc), param_hint="FILE_OR_KEY") from None
    except (YamlProblems, DefinitionError) as exc:
        _print_problems(exc.problems())
        raise typer.Exit(1) from None


# --- commands ---------------------------------------------------------------------------------------------

WorkflowsOption = Annotated[
    Path | None,
    typer.Option(
        "--workflows",
        envvar=WORKFLOWS_ENV,
        file_okay=False,
        help="在此目录中按定义键查找（默认为随附的 workflows/） / directory to look keys up in.",
        show_default=False,
    ),
]


@app.command()
def validate(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH",
            exists=True,
            help="定义文件或目录（目录即其中全部 *.yaml） / definition files or directories (every *.yaml).",
            show_default=False,
        ),
    ],
    lang: Annotated[
        ProblemLanguage, typer.Option("--lang", help="问题说明的语言 / language of the messages.")
    ] = ProblemLanguage.both,
    as_json: Annotated[
        bool, typer.Option("--json", help="以 JSON 数组输出全部问题 / print the problems as a JSON array.")
    ] = False,
) -> None:
    """校验定义文件 / Check definition files: schema, references and the procedure rules.

    Prints OK for each valid file and every problem of each invalid one. Exit 0 when all are valid, 1 when any
    problem is found, 2 on usage errors.
    """
    # Collect every file first, so that a usage error stops the run before anything is printed.
    batches: list[tuple[Path | None, list[Path]]] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            files = definition_files(path)
            if not files:
                raise typer.BadParameter(
                    f"目录 {path} 中没有 *.yaml 定义文件 / no *.yaml definition files in {path}",
                    param_hint="PATH",
                )
            batch: tuple[Path | None, list[Path]] = (path, files)
        else:
            batch = (None, [path])
        fresh = [file for file in batch[1] if file.resolve() not in seen]
        seen.update(file.resolve() for file in fresh)
        batches.append((batch[0], fresh))

    problems: list[Problem] = []
    files_checked = invalid = 0
    for directory, files in batches:
        first_of_key: dict[str, str] = {}
        for file in files:
            files_checked += 1
            try:
                loaded = load_definition_file(file)
            except (YamlProblems, DefinitionError) as exc:
                found = exc.problems()
            else:
                found = []
                key = loaded.definition.key
                if directory is not None and key in first_of_key:
                    # The service loads a whole directory: two files with one key cannot both be served.
                    found.append(
                        Problem.of(
                            "definition.duplicate_key",
                            loaded.source.locate(("key",)),
                            key=key,
                            first=first_of_key[key],
                        )
                    )
                first_of_key.setdefault(key, str(file))
                if not found and not as_json:
                    definition = loaded.definition
                    typer.echo(
                        f"OK {file} ({key}, {len(definition.states)} states, {len(definition.transitions)} transitions)"
                    )
            if found:
                invalid += 1
                problems.extend(found)
                if not as_json:
                    for problem in found:
                        typer.echo(format_problem(problem, lang.value, str(file)))
    if as_json:
        typer.echo(json.dumps([problem_record(p) for p in problems], ensure_ascii=False, indent=2))
    else:
        typer.echo(
            f"{files_checked} 个文件，{invalid} 个有问题，共 {len(problems)} 处问题 / "
            f"{files_checked} file(s), {invalid} invalid, {len(problems)} problem(s)",
            err=True,
        )
    if problems:
        raise typer.Exit(1)


@app.command()
def diagram(
    file_or_key: Annotated[
        str, typer.Argument(metavar="FILE_OR_KEY", help="定义文件或定义键 / a definition file or key.")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            dir_okay=False,
            help="写入文件（.md 文件带 ```mermaid 代码块） / write to FILE (a .md file gets a mermaid fence).",
            show_default=False,
        ),
    ] = None,
    project_state: Annotated[
        str | None,
        typer.Option("--project-state", help="突出显示的当前状态 / state to highlight.", show_default=False),
    ] = None,
    lang: Annotated[Language, typer.Option("--lang", help="标题语言 / language of the titles.")] = Language.zh,
    workflows: WorkflowsOption = None,
) -> None:
    """画出项目状态机（Mermaid） / Draw the project machine as a Mermaid stateDiagram-v2."""
    loaded = _load_or_exit(file_or_key, workflows)
    definition = loaded.definition
    if project_state is not None and project_state not in definition.lookup("states"):
        states = ", ".join(state.id for state in definition.states)
        raise typer.BadParameter(
            f"没有状态 “{project_state}”（可用：{states}） / no state '{project_state}' (states: {states})",
            param_hint="--project-state",
        )
    text = render_mermaid(definition, highlight_state=project_state, lang=lang.value)
    if output is None:
        typer.echo(text, nl=False)
        return
    if output.suffix.lower() in (".md", ".markdown"):
        text = f"```mermaid\n{text}```\n"
    output.write_text(text, encoding="utf-8")
    typer.echo(f"已写入 / wrote {output}", err=True)


@app.command()
def explain(
    file_or_key: Annotated[
        str, typer.Argument(metavar="FILE_OR_KEY", help="定义文件或定义键 / a definition file or key.")
    ],
    lang: Annotated[
        Language, typer.Option("--lang", help="说明语言（英文标题缺失时用中文） / language.")
    ] = Language.zh,
    rich_tables: Annotated[
        bool | None,
        typer.Option(
            "--rich/--plain",
            help="表格样式：rich 表格或纯文本（默认：终端用 rich） / rich tables or plain text (default: rich "
            "on a terminal).",
            show_default=False,
        ),
    ] = None,
    workflows: WorkflowsOption = None,
) -> None:
    """用中文说明一个定义 / Explain a definition in readable Chinese (or English)."""
    loaded = _load_or_exit(file_or_key, workflows)
    blocks = explain_blocks(loaded.definition, lang.value)
    use_rich = sys.stdout.isatty() if rich_tables is None else rich_tables
    if use_rich and _print_rich(blocks):
        return
    typer.echo(render_plain(blocks), nl=False)


def _print_rich(blocks: list[Block]) -> bool:
    """Print ``blocks`` with rich tables; False when rich is not installed (the caller prints plain text)."""
    try:
        from rich import box
        from rich.console import Console
        from rich.padding import Padding
        from rich.table import Table as RichTable
        from rich.text import Text
    except ImportError:  # pragma: no cover - rich comes with typer; typer-slim lacks it
        return False
    console = Console(highlight=False)
    for block in blocks:
        if isinstance(block, Heading):
            style = {0: "bold underline", 1: "bold"}.get(block.level, "bold dim")
            if block.level > 0:
                console.print()
            console.print(Text(block.text, style=style))
        elif isinstance(block, Line):
            console.print(Text("  " * block.indent + block.text))
        else:
            table = RichTable(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
            for header in block.headers:
                table.add_column(Text(header, style="bold"))
            for row in block.rows:
                table.add_row(*(Text(cell) for cell in row))
            console.print(Padding(table, (0, 0, 0, 2 * block.indent), expand=False))
    return True
