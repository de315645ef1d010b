"""``lifecycle publish`` and ``lifecycle workflow ...`` on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app

from .edits import MINI_TEXT, mini_v2, replace

runner = CliRunner()


@pytest.fixture
def env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.delenv("LIFECYCLE_WORKFLOWS_DIR", raising=False)
    return {"LIFECYCLE_DATABASE_URL": db_url}


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_publish_bundled_then_an_edited_file_with_its_diff(env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "engine-mini.yaml").write_text(MINI_TEXT, encoding="utf-8")
    code, out, err = run(env, "publish", "--bundled", "--workflows", str(folder))
    assert code == 0, out + err
    assert out == "mini: 第 1 版已发布（已启用） / version 1 published\n"
    code, out, _ = run(env, "publish", "--bundled", "--workflows", str(folder))
    assert code == 0 and "内容与第 1 版相同，未发布新版本" in out

    edited = tmp_path / "mini-v2.yaml"
    edited.write_text(mini_v2(), encoding="utf-8")
    code, out, err = run(env, "publish", str(edited), "--note", "新增消防设计审查", "--diff", "--by", "zhang")
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == "mini: 第 2 版已发布（已启用） / version 2 published"
    assert lines[1].startswith("  与第 1 版相比 / against version 1: 新增 2 项，删除 1 项，修改 4 项")
    assert "+ 新增 permits.fire_review「消防设计审查」" in out

    code, out, _ = run(env, "workflow", "versions", "mini")
    assert code == 0
    rows = out.splitlines()
    assert rows[0].startswith("    1 ") and "bundled engine-mini.yaml" in rows[0]
    assert rows[1].startswith("*   2 ") and "zhang" in rows[1] and "新增消防设计审查" in rows[1]

    code, out, _ = run(env, "workflow", "diff", "mini", "--from", "1", "--to", "2", "--lang", "en")
    assert code == 0 and out.startswith("Definition mini version 1 → 2:")
    code, out, _ = run(env, "workflow", "activate", "mini", "1")
    assert code == 0 and "第 1 版已启用" in out


def test_publish_refuses_an_invalid_file_with_every_located_problem(env: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(replace(MINI_TEXT, "initial: draft", "initial: drafting"), encoding="utf-8")
    code, out, err = run(env, "publish", str(broken))
    assert code == 1 and out == ""
    assert f"{broken}:4:10: check." in err
    code, _, err = run(env, "workflow", "versions", "mini")
    assert code == 1 and "mini" in err  # nothing was published


def test_staged_publish_dry_run_and_usage_errors(env: dict[str, str], tmp_path: Path) -> None:
    first = tmp_path / "v1.yaml"
    first.write_text(MINI_TEXT, encoding="utf-8")
    second = tmp_path / "v2.yaml"
    second.write_text(mini_v2(), encoding="utf-8")
    assert run(env, "publish", str(first))[0] == 0
    code, out, _ = run(env, "publish", str(second), "--stage")
    assert code == 0 and "第 2 版已发布（未启用" in out
    code, out, _ = run(env, "publish", str(second), "--validate-only")
    assert code == 0 and "内容与第 2 版相同" in out
    code, out, err = run(env, "workflow", "migrate", "mini", "--from", "1", "--to", "2", "--dry-run")
    assert code == 0, out + err
    assert "共 0 个项目" in out and "--map building=constructing" in out
    code, _, err = run(env, "workflow", "migrate", "mini", "--from", "1", "--to", "2", "--map", "building")
    assert code == 2 and "old=new" in err
    code, _, err = run(env, "workflow", "migrate", "mini", "--from", "2", "--to", "2")
    assert code == 1 and "to_version: workflow.same_versions" in err
    code, _, err = run(env, "workflow", "migrate", "mini")
    assert code == 2 and "--from" in err
    assert run(env, "publish")[0] == 2
