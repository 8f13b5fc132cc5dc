"""The symlink resolver: targets resolved through the tree's own symlinks, never by text alone."""

from __future__ import annotations

import pytest
from packaging.version import Version

from steppatch.errors import UnsafeSymlink
from steppatch.limits import DEFAULT_LIMITS
from steppatch.links import LinkProblem, LinkProblemKind, symlinks_of, unsafe_links
from steppatch.model import EntryKind, FileEntry, Manifest
from steppatch.paths import link_stays_inside
from steppatch.plan import check_symlinks, merge_manifests

HOPS = DEFAULT_LIMITS.max_symlink_hops
ESCAPES, LOOP, TOO_MANY = (
    LinkProblemKind.ESCAPES,
    LinkProblemKind.LOOP,
    LinkProblemKind.TOO_MANY_HOPS,
)
DEEP = "/".join(f"d{i}" for i in range(30))


def verdicts(links: dict[str, str], max_hops: int = HOPS) -> dict[str, tuple[str, str]]:
    return {p.path: (p.kind.value, p.via) for p in unsafe_links(links, max_hops)}


def test_the_thirty_level_chain_of_the_issue_is_refused() -> None:
    links = {
        f"{DEEP}/up": "/".join([".."] * 30),
        "passwd": f"{DEEP}/up/" + "/".join([".."] * 31) + "/etc/passwd",
    }
    # The text alone says both stay inside: that was the hole.
    assert all(link_stays_inside(path, target) for path, target in links.items())
    assert unsafe_links(links, HOPS) == (LinkProblem("passwd", links["passwd"], ESCAPES, "passwd"),)


def test_the_chain_without_its_last_step_is_fine() -> None:
    links = {
        f"{DEEP}/up": "/".join([".."] * 30),
        "passwd": f"{DEEP}/up/etc/passwd",
        "root": f"{DEEP}/up",
    }
    assert unsafe_links(links, HOPS) == ()


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        ({"a": "b", "b": "a"}, {"a": ("loop", "a"), "b": ("loop", "a")}),
        ({"a": "a"}, {"a": ("loop", "a")}),
        ({"a": "a/.."}, {"a": ("loop", "a")}),
        ({"d/a": "../d/b", "d/b": "a"}, {"d/a": ("loop", "d/a"), "d/b": ("loop", "d/a")}),
        # A link that only passes through a loop is refused too, saying where the loop is.
        (
            {"a": "b", "b": "a", "c": "x/../a/y"},
            {"a": ("loop", "a"), "b": ("loop", "a"), "c": ("loop", "a")},
        ),
    ],
)
def test_loops_are_refused(links: dict[str, str], expected: dict[str, tuple[str, str]]) -> None:
    assert verdicts(links) == expected


def test_the_hop_limit_counts_every_symlink_followed() -> None:
    chain = {f"l{i}": f"l{i + 1}" for i in range(HOPS)}  # l0 follows 40 symlinks: allowed
    assert verdicts(chain) == {}
    chain[f"l{HOPS}"] = "file"  # now 41
    assert verdicts(chain) == {"l0": ("too-many-hops", "l0")}
    assert verdicts({"a": "b", "b": "c", "c": "d"}, max_hops=2) == {"a": ("too-many-hops", "a")}


def test_hops_through_a_directory_link_count_each_time_it_is_followed() -> None:
    # Followed twice in one target: 1 (x) + 1 (d) + 1 (d) = 3 hops.
    links = {"d": "real", "x": "d/../d/f"}
    assert verdicts(links, max_hops=3) == {}
    assert verdicts(links, max_hops=2) == {"x": ("too-many-hops", "x")}


def test_a_long_chain_needs_no_recursion() -> None:
    chain = {f"l{i:06d}": f"l{i + 1:06d}" for i in range(100_000)}
    problems = unsafe_links(chain, HOPS)
    assert len(problems) == 100_000 - HOPS
    assert all(p.kind is TOO_MANY for p in problems)


@pytest.mark.parametrize("target", ["/etc/passwd", "/", "//x", ""])
def test_absolute_or_empty_targets_are_refused(target: str) -> None:
    assert verdicts({"d/x": target}) == {"d/x": ("escapes", "d/x")}


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        ({"x": ".."}, {"x": ("escapes", "x")}),
        ({"d/x": "../.."}, {"d/x": ("escapes", "d/x")}),
        ({"d/x": ".."}, {}),
        ({"d/e/x": "../../f"}, {}),
        # Out and back in is refused: the tree's own name is not known.
        ({"d/x": "../../tree/d"}, {"d/x": ("escapes", "d/x")}),
        # A link ending at a link that escapes escapes too, through it.
        ({"x": "y", "y": "d/../.."}, {"x": ("escapes", "y"), "y": ("escapes", "y")}),
    ],
)
def test_dotdot_at_the_root_escapes(
    links: dict[str, str], expected: dict[str, tuple[str, str]]
) -> None:
    assert verdicts(links) == expected


@pytest.mark.parametrize(
    "links",
    [
        {"x": "missing/file"},
        {"d/x": "../nothing/here"},
        {"x": "missing/../y"},
        {"x": "./d//e/."},
        {"x": "f/.."},  # through a file: the kernel stops there; never outside
        {"x": "y", "y": "missing"},
    ],
)
def test_dangling_links_inside_the_tree_are_fine(links: dict[str, str]) -> None:
    assert verdicts(links) == {}


def test_a_link_to_a_directory_then_dotdot_is_taken_from_where_it_leads() -> None:
    links = {
        "dl": "d0/d1",
        "x": "dl/..",  # d0
        "y": "dl/../..",  # the root
        "z": "dl/../../..",  # above it
        "d0/d1/d2/w": "../../../dl/../../..",  # d0/d1/d2 -> root -> dl=d0/d1 -> root -> out
    }
    assert verdicts(links) == {"z": ("escapes", "z"), "d0/d1/d2/w": ("escapes", "d0/d1/d2/w")}
    # The same text is fine when dl leads one level deeper: only where it leads decides.
    assert verdicts({"dl": "d0/d1/d2", "z": "dl/../../.."}) == {}


def test_problems_are_sorted_and_described() -> None:
    links = {"z": "/etc", "a": "b", "b": "a", "m/p": "../q/../../x", "q": "m/.."}
    problems = unsafe_links(links, HOPS)
    assert [p.path for p in problems] == ["a", "b", "m/p", "z"]
    assert "'b' -> 'a' loops (through 'a')" in problems[1].describe()
    assert "leads outside the managed tree" in problems[3].describe()
    assert "through" not in problems[3].describe()


def test_symlinks_of_keeps_only_symlinks() -> None:
    entries = [
        FileEntry("d", EntryKind.DIR, 0o755),
        FileEntry("d/f", EntryKind.FILE, 0o644, 1, "a" * 64),
        FileEntry("d/l", EntryKind.SYMLINK, 0o777, target="f"),
    ]
    assert symlinks_of(entries) == {"d/l": "f"}


def manifest(name: str, version: str, *entries: FileEntry) -> Manifest:
    return Manifest(name, Version(version), entries)


def link(path: str, target: str) -> FileEntry:
    return FileEntry(path, EntryKind.SYMLINK, 0o777, target=target)


def test_a_link_of_one_component_through_a_link_of_another_is_refused() -> None:
    manifests = {
        "alpha": manifest(
            "alpha",
            "1.0",
            FileEntry("a", EntryKind.DIR, 0o755),
            link("a/passwd", "../b/out/../../etc/passwd"),
        ),
        "beta": manifest(
            "beta", "2.0", FileEntry("b", EntryKind.DIR, 0o755), link("b/out", "../b")
        ),
    }
    # Each is fine on its own (alone, b/out in alpha is a plain directory) ...
    for m in manifests.values():
        assert unsafe_links(symlinks_of(m.entries), HOPS) == ()
    tree = merge_manifests(manifests)
    versions = {n: m.version for n, m in manifests.items()}
    # ... but together b/out is b, so b/out/../.. is above the root.
    with pytest.raises(UnsafeSymlink) as info:
        check_symlinks(tree, versions, HOPS)
    e = info.value
    assert (e.component, e.version, e.path, e.reason, e.via, e.count) == (
        "alpha",
        "1.0",
        "a/passwd",
        "escapes",
        "a/passwd",
        1,
    )
    assert e.target == "../b/out/../../etc/passwd"
    assert "alpha 1.0" in str(e) and "a/passwd" in str(e)


def test_the_error_names_the_other_components_link_when_the_way_leads_through_it() -> None:
    manifests = {
        "alpha": manifest("alpha", "1.0", link("a", "b/x")),
        "beta": manifest(
            "beta", "3.0", FileEntry("b", EntryKind.DIR, 0o755), link("b/x", "../y/..")
        ),
        "gamma": manifest("gamma", "1.0", link("y", "b/..")),
    }
    # a -> b/x; b/x -> ../y/..; y -> b/.. = the root, so y/.. is above it: b/x escapes.
    with pytest.raises(UnsafeSymlink) as info:
        check_symlinks(
            merge_manifests(manifests), {n: m.version for n, m in manifests.items()}, HOPS
        )
    e = info.value
    assert (e.component, e.version, e.path, e.via, e.count) == ("alpha", "1.0", "a", "b/x", 2)


def test_a_loop_across_components_is_refused() -> None:
    manifests = {
        "alpha": manifest("alpha", "1.0", link("a", "b")),
        "beta": manifest("beta", "1.0", link("b", "a")),
    }
    with pytest.raises(UnsafeSymlink) as info:
        check_symlinks(
            merge_manifests(manifests), {n: m.version for n, m in manifests.items()}, HOPS
        )
    assert (info.value.path, info.value.reason, info.value.count) == ("a", "loop", 2)


def test_a_tree_without_problems_passes() -> None:
    manifests = {"alpha": manifest("alpha", "1.0", link("a", "b"), link("c", "a/../d"))}
    check_symlinks(merge_manifests(manifests), {"alpha": Version("1.0")}, HOPS)
