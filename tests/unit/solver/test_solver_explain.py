"""Explanations and the derivation data of ResolutionImpossible."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from packaging.version import Version

from steppatch.errors import ResolutionImpossible
from steppatch.solver import (
    ROOT,
    Dependency,
    Derived,
    DictIndex,
    Incompatibility,
    NoVersions,
    UnknownComponent,
    explain,
    solve,
)


def failure(
    data: Mapping[str, Mapping[str, Mapping[str, str]]],
    requirements: list[str],
    installed: Mapping[str, Version] | None = None,
) -> ResolutionImpossible:
    with pytest.raises(ResolutionImpossible) as info:
        solve(requirements, DictIndex(data), installed=installed)
    return info.value


def test_brief_example_no_versions_match() -> None:
    error = failure(
        {"restapi": {"7.0.39": {}, "7.0.40": {"step-core": ">=9.0,<10"}}, "step-core": {"8": {}}},
        ["restapi>=7.0.40"],
    )
    assert str(error) == (
        "Because restapi >=7.0.40 depends on step-core >=9.0,<10 and no versions of step-core "
        "match >=9.0,<10, restapi >=7.0.40 is forbidden.\n"
        "So, because the request depends on restapi >=7.0.40, version solving failed."
    )
    assert error.explanation == str(error)


def test_unknown_name_in_request() -> None:
    error = failure({}, ["nosuch>=1"])
    assert str(error) == (
        "Because the request depends on nosuch >=1 which doesn't exist, version solving failed."
    )
    kinds = [type(leaf.cause) for leaf in _derivation(error).leaves()]
    assert kinds == [Dependency, UnknownComponent]


def test_empty_range_in_request() -> None:
    error = failure({"a": {"1": {}}}, ["a>=2,<1"])
    assert str(error) == (
        "Because the request depends on a >=2,<1 and no versions of a match >=2,<1, "
        "version solving failed."
    )


def test_unknown_dependency() -> None:
    error = failure({"a": {"1": {"ghost": ""}}}, ["a"])
    assert str(error) == (
        "Because every version of a depends on ghost which doesn't exist, a is forbidden.\n"
        "So, because the request depends on a, version solving failed."
    )


def test_conflicting_requests_for_one_component() -> None:
    error = failure({"a": {"1": {}, "2": {}}}, ["a<2", "a>=2"])
    # Requests are ordered facts; two of them exclude each other.
    assert str(error).endswith("version solving failed.")
    assert "a <2" in str(error) and "a >=2" in str(error)


def test_installed_component_in_the_story() -> None:
    error = failure(
        {"restapi": {"7.0.40": {"step-core": ">=10"}}, "step-core": {"9.0.0": {}}},
        ["restapi"],
        installed={"step-core": Version("9.0.0")},
    )
    text = str(error)
    assert "restapi depends on step-core >=10" in text
    assert text.endswith("version solving failed.")


def test_branching_report_numbers_only_reused_lines() -> None:
    error = failure(
        {
            "foo": {
                "1.0.0": {"a": ">=1,<2", "b": ">=1,<2"},
                "1.1.0": {"x": ">=1,<2", "y": ">=1,<2"},
            },
            "a": {"1.0.0": {"b": ">=2,<3"}},
            "b": {"1.0.0": {}, "2.0.0": {}},
            "x": {"1.0.0": {"y": ">=2,<3"}},
            "y": {"1.0.0": {}, "2.0.0": {}},
        },
        ["foo>=1,<2"],
    )
    lines = str(error).splitlines()
    assert [line[:4] for line in lines].count("(1) ") == 1
    assert not any(line.startswith("(2)") for line in lines)
    assert "" in lines  # a blank line starts the second branch
    assert lines[-1] == "    So, because the request depends on foo >=1,<2, version solving failed."


def test_linear_report_has_no_numbers() -> None:
    error = failure(
        {
            "foo": {"1.0.0": {"bar": ">=2,<3"}},
            "bar": {"2.0.0": {"baz": ">=3,<4"}},
            "baz": {"1.0.0": {}, "3.0.0": {}},
        },
        ["foo>=1,<2", "baz>=1,<2"],
    )
    assert str(error) == (
        "Because every version of foo depends on bar >=2,<3 which depends on baz >=3,<4, "
        "every version of foo requires baz >=3,<4.\n"
        "So, because the request depends on both foo >=1,<2 and baz >=1,<2, "
        "version solving failed."
    )


def _derivation(error: ResolutionImpossible) -> Incompatibility:
    assert isinstance(error.derivation, Incompatibility)
    return error.derivation


def test_derivation_is_data() -> None:
    error = failure(
        {
            "foo": {"1.0.0": {"bar": ">=2,<3"}},
            "bar": {"2.0.0": {"baz": ">=3,<4"}},
            "baz": {"1.0.0": {}, "3.0.0": {}},
        },
        ["foo>=1,<2", "baz>=1,<2"],
    )
    root = _derivation(error)
    assert root.is_failure
    assert isinstance(root.cause, Derived)
    assert explain(root) == str(error)
    leaves = list(root.leaves())
    assert all(isinstance(leaf.cause, Dependency) for leaf in leaves)
    facts = set()
    for leaf in leaves:
        assert isinstance(leaf.cause, Dependency)
        dep = leaf.cause
        facts.add(
            (
                dep.depender.name,
                tuple(map(str, dep.depender.versions)),
                dep.dependee.name,
                tuple(map(str, dep.dependee.versions)),
                dep.specifier,
            )
        )
    assert facts == {
        (ROOT, ("0",), "foo", ("1.0.0",), ">=1,<2"),
        (ROOT, ("0",), "baz", ("1.0.0",), ">=1,<2"),
        ("foo", ("1.0.0",), "bar", ("2.0.0",), ">=2,<3"),
        ("bar", ("2.0.0",), "baz", ("3.0.0",), ">=3,<4"),
    }


def test_no_versions_leaf_data() -> None:
    error = failure({"a": {"1": {"b": ">=5"}}, "b": {"1": {}}}, ["a"])
    leaves = list(_derivation(error).leaves())
    nov = [leaf.cause for leaf in leaves if isinstance(leaf.cause, NoVersions)]
    assert len(nov) == 1
    assert nov[0].term.name == "b"
    assert nov[0].specifier == ">=5"
    assert nov[0].term.versions == ()


def test_incompatibility_strings() -> None:
    error = failure({"a": {"1": {"b": ">=5"}}, "b": {"1": {}}}, ["a"])
    root = _derivation(error)
    assert str(root) == "version solving failed"
    assert "Incompatibility" in repr(root)
    texts = {str(leaf) for leaf in root.leaves()}
    assert texts == {
        "the request depends on a",
        "every version of a depends on b >=5",
        "no versions of b match >=5",
    }


def test_long_chain_explanation_does_not_overflow() -> None:
    # 1500 versions failing one by one, each for its own missing pin, then the root fails.
    n = 1500
    data: dict[str, dict[str, dict[str, str]]] = {
        "a": {f"1.{i}": {"b": f"==9.{i}"} for i in range(n)},
        "b": {"1.0": {}},
    }
    error = failure(data, ["a"])
    assert str(error).endswith("version solving failed.")
