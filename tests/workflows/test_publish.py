"""Publishing definition versions, validating, activating, and the definition-level events (SQLite and
PostgreSQL)."""

from __future__ import annotations

import pytest

from lifecycle.errors import Forbidden, NotFound
from lifecycle.services import Services
from lifecycle.services.workflows import InvalidDefinition, WorkflowAdmin

from .conftest import ADMIN, DISPATCHER, UNIT_A, as_, create
from .edits import MINI_TEXT, mini_v2, replace

pytestmark = pytest.mark.anyio


async def test_publishing_stores_an_immutable_version_and_activates_it(
    services: Services, admin: WorkflowAdmin
) -> None:
    result = await admin.publish(as_(ADMIN), mini_v2(), change_note="新增消防设计审查")
    assert result.status == "published"
    assert result.version is not None
    assert (result.version.version, result.version.active, result.version.published_by) == (2, True, "admin")
    assert result.version.change_note == "新增消防设计审查"
    assert result.content_hash.startswith("sha256:") and result.version.content_hash == result.content_hash
    assert result.compared_with == 1 and result.diff is not None
    assert result.diff["state_renames"] == {"building": "constructing"}
    assert "permits.fire_review" in result.diff["text"]

    versions = await admin.versions(as_(DISPATCHER), "mini")
    assert [(v.version, v.active) for v in versions] == [(1, False), (2, True)]
    _, definition = await admin.definition(as_(DISPATCHER), "mini")
    assert "constructing" in definition.lookup("states")
    events = await admin.events(as_(ADMIN), "mini")
    assert [(e.kind, e.version) for e in events] == [("workflow.published", 2), ("workflow.activated", 2)]
    assert events[0].data["previous_version"] == 1 and events[0].data["diff_totals"]["added"] == 2
    assert events[1].data == {"previous_version": 1}


async def test_the_same_content_twice_creates_nothing(services: Services, admin: WorkflowAdmin) -> None:
    first = await admin.publish(as_(ADMIN), mini_v2())
    # Comments, formatting and key order are not content.
    reformatted = "# 第二次发布，只加了注释\n" + mini_v2().replace(
        "key: mini\ntitle: 测试流程", "title: 测试流程\nkey: mini"
    )
    again = await admin.publish(as_(ADMIN), reformatted)
    assert again.status == "unchanged"
    assert again.version is not None and first.version is not None
    assert again.version.version == first.version.version == 2
    assert len(await admin.versions(as_(ADMIN), "mini")) == 2
    assert len(await admin.events(as_(ADMIN), "mini")) == 2  # nothing new either
    # Version 1's own content is version 1: republishing it is not a rollback (activate v1 for that).
    old = await admin.publish(as_(ADMIN), MINI_TEXT)
    assert old.status == "unchanged" and old.version is not None and old.version.version == 1


async def test_invalid_yaml_reports_every_error_with_its_location_and_stores_nothing(
    services: Services, admin: WorkflowAdmin
) -> None:
    broken = replace(MINI_TEXT, "initial: draft", "initial: drafting")
    broken = replace(broken, "to: permitting, roles: [unit]", "to: permiting, roles: [unit]")
    with pytest.raises(InvalidDefinition) as refused:
        await admin.publish(as_(ADMIN), broken, name="mini-v2.yaml")
    problems = refused.value.problems()
    assert len(problems) >= 2
    assert refused.value.code == "definition.invalid"
    for problem in problems:
        assert problem.location is not None and problem.location.file == "mini-v2.yaml"
        assert problem.location.line > 0 and problem.location.column > 0 and problem.location.path
    paths = {p.location.dotted_path for p in problems if p.location}
    assert "initial" in paths and "transitions[0].to" in paths
    with pytest.raises(InvalidDefinition) as syntax:
        await admin.publish(as_(ADMIN), "key: mini\ntitle: [unclosed\n")
    assert syntax.value.problems()[0].location is not None
    with pytest.raises(InvalidDefinition):
        await admin.publish(as_(ADMIN), "  \n")
    assert len(await admin.versions(as_(ADMIN), "mini")) == 1
    assert await admin.events(as_(ADMIN)) == []


async def test_validate_only_compares_with_the_active_version_and_stores_nothing(
    services: Services, admin: WorkflowAdmin
) -> None:
    checked = await admin.validate(as_(ADMIN), mini_v2())
    assert checked.status == "validated" and checked.version is None and checked.compared_with == 1
    assert checked.diff is not None and checked.diff["totals"]["added"] >= 2
    assert checked.summary.items == 3
    assert len(await admin.versions(as_(ADMIN), "mini")) == 1
    same = await admin.validate(as_(ADMIN), MINI_TEXT)
    assert same.version is not None and same.version.version == 1 and same.diff is not None
    assert same.diff["identical"] is True


async def test_only_administrators_publish_and_activate(services: Services, admin: WorkflowAdmin) -> None:
    with pytest.raises(Forbidden):
        await admin.publish(as_(DISPATCHER), mini_v2())
    checked = await admin.validate(as_(DISPATCHER), mini_v2())  # an editor may check a text
    assert checked.status == "validated"
    with pytest.raises(Forbidden):
        await admin.activate(as_(DISPATCHER), "mini", 1)
    assert len(await admin.versions(as_(ADMIN), "mini")) == 1


async def test_a_staged_version_waits_for_activation_and_running_projects_keep_theirs(
    services: Services, admin: WorkflowAdmin
) -> None:
    before = await create(services)
    staged = await admin.publish(as_(ADMIN), mini_v2(), activate=False)
    assert staged.version is not None and not staged.version.active
    assert [e.kind for e in await admin.events(as_(ADMIN), "mini")] == ["workflow.published"]
    on_v1 = await create(services)
    assert on_v1.definition_version == 1

    activated = await admin.activate(as_(ADMIN), "mini", 2)
    assert activated.active and activated.version == 2
    on_v2 = await create(services)
    assert on_v2.definition_version == 2
    assert (await services.get_project(as_(DISPATCHER), before.id)).definition_version == 1
    versions = await admin.versions(as_(ADMIN), "mini")
    assert [(v.version, v.active, v.projects) for v in versions] == [(1, False, 2), (2, True, 1)]
    # Activating the active version again changes nothing.
    await admin.activate(as_(ADMIN), "mini", 2)
    assert [e.kind for e in await admin.events(as_(ADMIN), "mini")] == ["workflow.published", "workflow.activated"]
    # Back to version 1 for new projects: running ones stay where they are.
    await admin.activate(as_(ADMIN), "mini", 1)
    assert (await create(services)).definition_version == 1
    assert (await services.get_project(as_(DISPATCHER), on_v2.id)).definition_version == 2
    with pytest.raises(NotFound):
        await admin.activate(as_(ADMIN), "mini", 9)


async def test_a_new_key_starts_at_version_one(services: Services, admin: WorkflowAdmin) -> None:
    text = replace(MINI_TEXT, "key: mini", "key: mini-two")
    result = await admin.publish(as_(ADMIN), text)
    assert result.version is not None and result.version.version == 1 and result.compared_with is None
    assert result.diff is None
    project = await create(services, definition_key="mini-two")
    assert (project.definition_key, project.definition_version) == ("mini-two", 1)


async def test_diff_between_versions(services: Services, admin: WorkflowAdmin) -> None:
    await admin.publish(as_(ADMIN), mini_v2())
    diff = await admin.diff(as_(UNIT_A), "mini", 1, 2)
    assert diff.find("items", "permits.fire_review") is not None
    assert diff.find("states", "building") is not None and diff.state_renames == {"building": "constructing"}
    assert (await admin.diff(as_(UNIT_A), "mini")).to_version == 2  # defaults: latest and the one before
    with pytest.raises(NotFound):
        await admin.diff(as_(UNIT_A), "mini", 1, 7)


async def test_publishing_the_bundled_folder_is_explicit_and_idempotent(
    services: Services, admin: WorkflowAdmin, tmp_path: object
) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path)) / "edited"
    folder.mkdir()
    (folder / "engine-mini.yaml").write_text(mini_v2(), encoding="utf-8")
    [published] = await admin.publish_bundled(as_(ADMIN), folder)
    assert published.status == "published" and published.version is not None and published.version.version == 2
    assert published.version.change_note == "bundled engine-mini.yaml"
    [again] = await admin.publish_bundled(as_(ADMIN), folder)
    assert again.status == "unchanged"
    # Start-up publication never publishes the edit silently.
    (folder / "engine-mini.yaml").write_text(
        replace(mini_v2(), "title: 测试流程", "title: 测试流程三"), encoding="utf-8"
    )
    [outcome] = await services.publish_bundled(folder)
    assert outcome.status == "not_published"
