"""Solver scenarios as data (resolvelib-style): one JSON file per case in ``solver/``.

Each file holds ``description``, ``index`` (name -> version -> dependency -> specifier, the shape
``DictIndex`` takes), ``requested`` (requirement strings), optionally ``installed`` (name ->
version) and either ``resolved`` (name -> version, the whole answer) or ``explanation`` (the lines
of the failure's text). A new solver bug becomes a new file here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from steppatch.errors import ResolutionImpossible
from steppatch.solver import DictIndex, Incompatibility, solve
from steppatch.testing import check_solution

CASES = sorted((Path(__file__).parent / "solver").glob("*.json"))


def test_there_are_scenarios() -> None:
    names = {case.stem for case in CASES}
    # Every worked example of pub's doc/solver.md.
    assert {
        "pub-no-conflicts",
        "pub-avoiding-conflict-during-decision-making",
        "pub-performing-conflict-resolution",
        "pub-conflict-resolution-with-partial-satisfier",
        "pub-linear-error-reporting",
        "pub-branching-error-reporting",
    } <= names


@pytest.mark.parametrize("case", CASES, ids=[case.stem for case in CASES])
def test_scenario(case: Path) -> None:
    data: dict[str, Any] = json.loads(case.read_text())
    assert ("resolved" in data) != ("explanation" in data), "expect one outcome"
    installed = {name: Version(v) for name, v in data.get("installed", {}).items()}
    index = DictIndex(data["index"])
    if "resolved" in data:
        solution = solve(data["requested"], index, installed=installed)
        assert {name: str(v) for name, v in solution.items()} == data["resolved"]
        assert check_solution(data["index"], data["requested"], solution, installed) == []
    else:
        with pytest.raises(ResolutionImpossible) as info:
            solve(data["requested"], index, installed=installed)
        assert str(info.value).splitlines() == data["explanation"]
        assert isinstance(info.value.derivation, Incompatibility)
