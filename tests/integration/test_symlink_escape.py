"""Issue 14, item 2: symlink chains that leave the managed tree, on a real disk.

The attack: ``d0/.../d29/up -> ../..(30)`` and ``passwd -> d0/.../d29/up/../..(31)/etc/passwd``.
Each target, read as text, stays inside; resolved through ``up`` it is ``/etc/passwd``. It is
refused at ``repo add``, and a repository that holds it anyway (published around the check, as
an attacker with the index key or a bug would) is refused by every command that plans a new tree,
before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from packaging.version import Version

from steppatch import Home, Repository
from steppatch.cluster import Cluster
from steppatch.config import NodeEntry
from steppatch.errors import ComponentSourceError, NodeFailed, UnsafeSourceSymlink, UnsafeSymlink
from steppatch.model import RecipeKind
from steppatch.recipe import pinned_recipe
from tests.builders import Spec, component, home_for, repository, tree

DEEP = "/".join(f"d{i}" for i in range(30))
CHAIN: dict[str, Spec] = {
    f"{DEEP}/up": ("link", "/".join([".."] * 30)),
    "passwd": ("link", f"{DEEP}/up/" + "/".join([".."] * 31) + "/etc/passwd"),
}
V1, V2 = "to:app/1.0/app-1.0.spr", "to:app/2.0/app-2.0.spr"


def evil_files() -> dict[str, Spec]:
    return {"bin/run": b"#!/bin/sh\n", "lib/new.bin": b"only in 2.0", **CHAIN}


def publish_around_the_check(
    repo: Repository, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publish ``source`` as if ``repo add`` had no symlink check (signed like any other)."""
    with monkeypatch.context() as m:
        m.setattr("steppatch.repo._source.unsafe_links", lambda links, max_hops: ())
        repo.add(source)


@pytest.fixture
def evil_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repository:
    """app 1.0 (harmless) and app 2.0 (the chain), published."""
    src = tmp_path / "src"
    repo = repository(tmp_path, component(src, "app", "1.0", {"bin/run": b"#!/bin/sh\n"}))
    publish_around_the_check(repo, component(src, "app", "2.0", evil_files()), monkeypatch)
    return repo


@pytest.fixture
def installed(evil_repo: Repository, tmp_path: Path) -> Home:
    home = home_for(evil_repo, tmp_path / "home")
    home.apply([V1])
    return home


def digest(home: Path) -> dict[str, object]:
    """Every entry of the home, state and cache included, less the signed metadata (refreshed
    by every command that reaches the repository)."""
    return {k: v for k, v in tree(home).items() if not k.startswith(".steppatch/metadata")}


def assert_untouched(home: Home, before: dict[str, object], trees: list[str]) -> None:
    assert digest(home.path) == before
    assert sorted(p.name for p in home.files.trees.iterdir()) == trees
    assert not os.path.lexists(home.path / "current" / "passwd")
    assert not list((home.files.state_dir / "staged").glob("*"))


def trees_of(home: Home) -> list[str]:
    return sorted(p.name for p in home.files.trees.iterdir())


# --- repo add --------------------------------------------------------------------------------


def test_repo_add_refuses_the_chain_naming_component_version_and_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    repo = repository(tmp_path, component(src, "app", "1.0", {"bin/run": b"#!/bin/sh\n"}))
    bad = component(src, "app", "2.0", evil_files())
    before = tree(repo.root)
    with pytest.raises(UnsafeSourceSymlink) as info:
        repo.add(bad)
    e = info.value
    assert isinstance(e, ComponentSourceError)  # the family the text-only check raised
    assert (e.component, e.version, e.link, e.reason, e.via) == (
        "app",
        "2.0",
        "passwd",
        "escapes",
        "passwd",
    )
    assert e.path == str(bad / "files" / "passwd")
    assert e.target == CHAIN["passwd"][1]
    assert e.exit_code == 2
    assert "app 2.0" in str(e) and str(bad / "files" / "passwd") in str(e)
    assert tree(repo.root) == before  # nothing published, not even an object
    assert repo.index.get("app", Version("2.0")) is None


@pytest.mark.parametrize(
    ("links", "reason", "link"),
    [
        ({"a": ("link", "b"), "b": ("link", "a")}, "loop", "a"),
        ({f"l{i}": ("link", f"l{i + 1}") for i in range(41)}, "too-many-hops", "l0"),
        # Inside by the text (d0/d1/dl/../../.. is the root), outside through dl (the root).
        ({"d0/d1/dl": ("link", "../.."), "x": ("link", "d0/d1/dl/../../..")}, "escapes", "x"),
    ],
)
def test_repo_add_refuses_loops_long_chains_and_links_through_directory_links(
    tmp_path: Path, links: dict[str, Spec], reason: str, link: str
) -> None:
    repo = repository(tmp_path)
    before = tree(repo.root)
    with pytest.raises(UnsafeSourceSymlink) as info:
        repo.add(component(tmp_path / "src", "app", "1.0", links))
    assert (info.value.reason, info.value.link) == (reason, link)
    assert tree(repo.root) == before


def test_repo_add_keeps_links_that_stay_inside(tmp_path: Path) -> None:
    files: dict[str, Spec] = {
        f"{DEEP}/up": ("link", "/".join([".."] * 30)),
        "passwd": ("link", f"{DEEP}/up/etc/passwd"),  # dangling, but inside
        "etc/motd": b"hi",
        "motd": ("link", f"{DEEP}/up/etc/motd"),
    }
    repo = repository(tmp_path, component(tmp_path / "src", "app", "1.0", files))
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    assert (home.path / "current" / "motd").read_bytes() == b"hi"
    real = os.path.realpath(home.path / "current" / "motd")
    assert real.startswith(os.path.realpath(home.files.current) + "/")


# --- every command that plans a new tree -------------------------------------------------------


def test_apply_of_a_published_chain_is_refused_before_anything_is_written(
    installed: Home,
) -> None:
    before, trees = digest(installed.path), trees_of(installed)
    with pytest.raises(UnsafeSymlink) as info:
        installed.apply([V2])
    e = info.value
    assert (e.component, e.version, e.path, e.reason, e.via, e.count) == (
        "app",
        "2.0",
        "passwd",
        "escapes",
        "passwd",
        1,
    )
    assert e.target == CHAIN["passwd"][1]
    assert e.exit_code == 3
    assert_untouched(installed, before, trees)
    assert installed.status().versions() == {"app": Version("1.0")}


def test_a_first_install_of_the_chain_is_refused_too(evil_repo: Repository, tmp_path: Path) -> None:
    home = home_for(evil_repo, tmp_path / "fresh")
    before, trees = digest(home.path), trees_of(home)
    with pytest.raises(UnsafeSymlink):
        home.apply([V2])
    assert_untouched(home, before, trees)


def test_prepare_refuses_it_and_downloads_nothing(installed: Home) -> None:
    before, trees = digest(installed.path), trees_of(installed)
    with pytest.raises(UnsafeSymlink):
        installed.prepare([V2])
    assert_untouched(installed, before, trees)  # the cache included: lib/new.bin not fetched


def test_stage_refuses_it_and_stages_nothing(installed: Home) -> None:
    before, trees = digest(installed.path), trees_of(installed)
    with pytest.raises(UnsafeSymlink):
        installed.stage([V2])
    assert_untouched(installed, before, trees)


def test_a_cluster_apply_is_refused_on_the_first_node_and_no_node_changes(
    evil_repo: Repository, tmp_path: Path
) -> None:
    paths = [tmp_path / name for name in ("a", "b")]
    for path in paths:
        home_for(evil_repo, path).apply([V1])
    first = Home.open(paths[0])
    first.name_node("a")
    first.add_node(NodeEntry("b", str(paths[1])))
    homes = [Home.open(p) for p in paths]
    before = [(digest(h.path), trees_of(h)) for h in homes]
    with pytest.raises(NodeFailed) as info:
        Cluster(first).apply([V2])
    assert (info.value.node, info.value.phase, info.value.exit_code) == ("a", "prepare", 3)
    assert isinstance(info.value.__cause__, UnsafeSymlink)
    for home, (digest_before, trees) in zip(homes, before, strict=True):
        assert_untouched(home, digest_before, trees)


def test_a_cluster_node_refuses_it_when_staged_from_another(
    evil_repo: Repository, installed: Home
) -> None:
    # What another node is sent: a snapshot of the versions the coordinator resolved.
    recipe = pinned_recipe(RecipeKind.SNAPSHOT, {"app": Version("2.0")}, name="cluster-apply")
    before, trees = digest(installed.path), trees_of(installed)
    with pytest.raises(UnsafeSymlink):
        installed.stage([recipe])
    assert_untouched(installed, before, trees)


def test_an_offline_patch_is_not_made_for_it(installed: Home, tmp_path: Path) -> None:
    target = installed.snapshot()
    before, trees = digest(installed.path), trees_of(installed)
    out = tmp_path / "evil.patch.spr"
    with pytest.raises(UnsafeSymlink):
        installed.prepare_offline([V2], target, out)
    assert not out.exists()
    assert_untouched(installed, before, trees)


def test_an_offline_patch_made_around_the_check_is_refused_at_apply(
    evil_repo: Repository, installed: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = home_for(evil_repo, tmp_path / "desk")
    target = installed.snapshot()
    out = tmp_path / "evil.patch.spr"
    with monkeypatch.context() as m:
        m.setattr("steppatch.offline_apply.check_symlinks", lambda tree, versions, max_hops: None)
        desk.prepare_offline([V2], target, out)
    before, trees = digest(installed.path), trees_of(installed)
    with pytest.raises(UnsafeSymlink):
        installed.apply_patch(out)
    assert_untouched(installed, before, trees)


# --- through another component's symlink ---------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> Repository:
    """Two components, each harmless alone and published by a plain ``repo add``: ``alpha``'s
    ``a/passwd -> ../b/out/../../etc/passwd`` leaves the tree only through ``beta``'s
    ``b/out -> ../b``."""
    src = tmp_path / "src"
    return repository(
        tmp_path,
        component(
            src,
            "alpha",
            "1.0",
            {"a/readme": b"a", "a/passwd": ("link", "../b/out/../../etc/passwd")},
        ),
        component(src, "beta", "1.0", {"b/readme": b"b", "b/out": ("link", "../b")}),
    )


def test_a_link_through_another_components_link_is_refused_when_both_are_applied(
    pair: Repository, tmp_path: Path
) -> None:
    home = home_for(pair, tmp_path / "home")
    before, trees = digest(home.path), trees_of(home)
    with pytest.raises(UnsafeSymlink) as info:
        home.apply(["to:alpha/1.0/alpha-1.0.spr", "to:beta/1.0/beta-1.0.spr"])
    e = info.value
    assert (e.component, e.version, e.path, e.via) == ("alpha", "1.0", "a/passwd", "a/passwd")
    assert_untouched(home, before, trees)


def test_adding_the_other_component_to_a_home_is_refused_naming_the_installed_link(
    pair: Repository, tmp_path: Path
) -> None:
    home = home_for(pair, tmp_path / "home")
    home.apply(["to:alpha/1.0/alpha-1.0.spr"])  # alone, b/out is nothing: a/passwd dangles
    before, trees = digest(home.path), trees_of(home)
    with pytest.raises(UnsafeSymlink) as info:
        home.apply(["to:beta/1.0/beta-1.0.spr"])
    # The installed, unchanged component is the one at fault, through the new one's link.
    assert (info.value.component, info.value.path) == ("alpha", "a/passwd")
    assert_untouched(home, before, trees)
    assert not os.path.lexists(home.path / "current" / "b")


def test_unchecked_the_chain_does_lead_to_etc_passwd(
    installed: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keeps the tests above honest: the tree they refuse is the attack, not a harmless one.
    monkeypatch.setattr("steppatch.pipeline.check_symlinks", lambda tree, versions, max_hops: None)
    installed.apply([V2])
    # 31 steps up from the tree's root reach / whatever the home's depth: /etc/passwd.
    assert os.path.realpath(installed.path / "current" / "passwd") == "/etc/passwd"
