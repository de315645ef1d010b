"""The broken-file corpus: each file in ``tests/data/invalid/`` states, in its first comment lines, exactly the
problems the loader must report for it (``# expect: <code> at <line>:<column>``), no more and no fewer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lifecycle.errors import DefinitionError, YamlProblems
from lifecycle.spec.loader import load_definition_file

CORPUS = Path(__file__).resolve().parents[1] / "data" / "invalid"
EXPECT = re.compile(r"^# expect: (?P<code>[a-z_]+\.[a-z_]+) at (?P<line>\d+):(?P<column>\d+)\s*$")
FILES = sorted(CORPUS.glob("*.yaml"))

KNOWN_BUGS: dict[str, str] = {}


def _cases() -> list[object]:
    return [
        pytest.param(path, id=path.stem, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[path.stem])])
        if path.stem in KNOWN_BUGS
        else pytest.param(path, id=path.stem)
        for path in FILES
    ]


def expected_problems(path: Path) -> set[tuple[str, int, int]]:
    """The ``# expect:`` lines at the top of ``path`` (the leading comment block)."""
    expected = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        match = EXPECT.match(line)
        if match:
            expected.add((match["code"], int(match["line"]), int(match["column"])))
        else:
            assert not line.startswith("# expect"), f"malformed expectation line: {line!r}"
    return expected


def test_the_corpus_is_large_enough() -> None:
    assert len(FILES) >= 30


def test_the_corpus_covers_every_check_code() -> None:
    from lifecycle.messages import CATALOGUE

    covered = {code for path in FILES for code, _, _ in expected_problems(path)}
    check_codes = {code for code in CATALOGUE if code.startswith("check.")}
    assert check_codes - covered == set()


@pytest.mark.parametrize("path", _cases())
def test_broken_file_reports_exactly_the_expected_problems(path: Path) -> None:
    expected = expected_problems(path)
    assert expected, f"{path.name} states no '# expect:' line"
    with pytest.raises((DefinitionError, YamlProblems)) as caught:
        load_definition_file(path)
    problems = caught.value.problems()
    reported = set()
    for problem in problems:
        assert problem.location is not None, problem
        assert Path(problem.location.file).name == path.name
        assert problem.zh.strip() and problem.en.strip(), problem
        reported.add((problem.code, problem.location.line, problem.location.column))
    assert reported == expected, "\n".join(str(p) for p in problems)
    positions = [(p.location.line, p.location.column) for p in problems if p.location]
    assert positions == sorted(positions), "problems are not sorted by position"
