"""The ``lifecycle`` command line (installed by ``pyproject.toml`` as ``lifecycle = "lifecycle.cli:main"``).

This module only assembles the application. Each group of commands lives in its own module, which defines a
``typer.Typer()`` named ``app`` with its commands and is added here with ``app.add_typer(module.app)``; added
without a name, its commands appear at the top level (``lifecycle validate``, not ``lifecycle definitions
validate``). To add commands (serve, tokens, audit, sweep, worker, publish…), write ``lifecycle/cli_<area>.py``
the same way and add one line below.

Exit codes are shared by every command: 0 success, 1 the command ran and found problems (an invalid definition,
a refused operation), 2 a usage error (a wrong option, a missing file, an unknown key), as click reports them.
"""

from __future__ import annotations

import typer

from lifecycle import cli_definitions, cli_scheduling, cli_service, cli_webhooks, cli_workflows

app = typer.Typer(
    name="lifecycle",
    help="巫山县重大项目全生命周期管理：工作流引擎命令行 / lifecycle workflow-engine tools.",
    no_args_is_help=True,
    add_completion=False,
    # Tracebacks must never print local variables: later commands handle tokens and database URLs.
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    """巫山县重大项目全生命周期管理：定义校验、流程图、说明及服务运维命令。

    Lifecycle workflow engine: check, draw and explain definitions; run and operate the service.
    """


app.add_typer(cli_definitions.app)
app.add_typer(cli_service.app)
app.add_typer(cli_scheduling.app)
app.add_typer(cli_webhooks.app)
app.add_typer(cli_workflows.app)


def main() -> None:
    """Run the command line (the ``lifecycle`` console script)."""
    app()


if __name__ == "__main__":  # pragma: no cover - ``python -m lifecycle.cli``
    main()
