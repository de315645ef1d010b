"""The operating commands against a real SQLite file: migrate, tokens, audit, and ``serve`` as a real process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from lifecycle.cli import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LIFECYCLE_DATABASE_URL", url)
    return {**os.environ, "LIFECYCLE_DATABASE_URL": url}


def test_migrate_then_tokens_create_list_revoke(env: dict[str, str]) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    created = runner.invoke(
        app, ["tokens", "create", "--principal", "town-a", "--role", "unit", "--unit", "quyuan_town"]
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("lc_")
    listed = runner.invoke(app, ["tokens", "list"])
    assert listed.exit_code == 0
    assert "town-a" in listed.stdout and token not in listed.stdout  # the secret is never listed
    token_id = listed.stdout.split()[0]
    assert runner.invoke(app, ["tokens", "revoke", token_id]).exit_code == 0
    assert "revoked" in runner.invoke(app, ["tokens", "list"]).stdout
    assert runner.invoke(app, ["tokens", "revoke", token_id]).exit_code == 1


def test_new_principal_needs_a_role(env: dict[str, str]) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    result = runner.invoke(app, ["tokens", "create", "--principal", "nobody"])
    assert result.exit_code != 0


def test_audit_verify_on_a_clean_database(env: dict[str, str]) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 0, result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(env: dict[str, str], cwd: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lifecycle.cli", "serve", "--port", str(port), "--no-background"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the service did not become ready")


def test_serve_prints_the_admin_token_once_and_serves_the_bundled_workflows(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LIFECYCLE_DATABASE_URL"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    tokens = []
    for _ in range(2):
        port = _free_port()
        server = _serve(env, tmp_path, port)
        try:
            _wait_ready(port)
        finally:
            server.terminate()
            _, err = server.communicate(timeout=20)
        tokens.append([line.strip() for line in err.splitlines() if line.strip().startswith("lc_")])
    assert len(tokens[0]) == 1 and tokens[1] == []  # shown on the first start only
    assert (tmp_path / "lifecycle.db").exists()  # SQLite in the working directory by default
    port = _free_port()
    server = _serve(env, tmp_path, port)
    try:
        _wait_ready(port)
        headers = {"Authorization": f"Bearer {tokens[0][0]}"}
        listed = httpx.get(f"http://127.0.0.1:{port}/api/v1/workflows", headers=headers).json()
        assert {w["key"] for w in listed} == {"major-project", "investment-attraction"}
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/workflows").status_code == 401
    finally:
        server.terminate()
        server.communicate(timeout=20)
