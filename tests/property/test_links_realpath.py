"""Property: the symlink resolver judges a tree as the filesystem does.

Random small trees (directories, files, symlinks with random relative or absolute targets) are
judged by ``links.unsafe_links`` and then materialised with ``os.symlink`` in a scratch directory.
Where the kernel resolves a symlink (``stat`` follows it), the resolver must agree exactly: refused
as escaping when ``os.path.realpath`` leads outside the tree, accepted when inside. Where the
kernel reports ``ELOOP``, the resolver must refuse it as a loop or too many hops. Where the kernel
stops at a missing name or a file, the resolver takes the name as it stands, as ``realpath``
does, and must agree with ``realpath``. Nothing is written outside the scratch directory:
symlinks are created, never followed for writing.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steppatch.limits import DEFAULT_LIMITS
from steppatch.links import LinkProblemKind, unsafe_links

# No name is the tree's own ("tree"), so a target that leaves the tree never comes back into it.
NAMES = ["a", "b", "c"]
LEAVES = ["a", "b", "c", "l", "m"]
SEGMENTS = [*LEAVES, "..", "..", ".", ""]

Tree = tuple[set[str], set[str], dict[str, str]]


@st.composite
def trees(draw: st.DrawFn) -> Tree:
    """(directories, files, symlinks: path -> target), every parent a directory."""
    tops = draw(st.lists(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3), max_size=5))
    dirs = {"/".join(parts[:i]) for parts in tops for i in range(1, len(parts) + 1)}
    places = ["", *sorted(dirs)]
    files: set[str] = set()
    links: dict[str, str] = {}
    for _ in range(draw(st.integers(0, 8))):
        where = draw(st.sampled_from(places))
        path = f"{where}/{draw(st.sampled_from(LEAVES))}".lstrip("/")
        if path in dirs or path in files or path in links:
            continue
        if draw(st.integers(0, 4)) == 0:
            files.add(path)
            continue
        segments = draw(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=5))
        target = "/".join(segments)
        if draw(st.integers(0, 9)) == 0:
            target = "/" + target  # absolute
        if not target:
            target = "."  # an empty target cannot be made
        links[path] = target
    return dirs, files, links


def materialise(root: Path, tree: Tree) -> None:
    dirs, files, links = tree
    root.mkdir()
    for d in sorted(dirs):
        (root / d).mkdir()
    for f in files:
        (root / f).write_bytes(b"")
    for path, target in links.items():
        os.symlink(target, root / path)


def inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + "/")


def unresolved(root: str, path: str) -> bool:
    """Whether ``path`` (under ``root``) still holds a symlink: realpath gave up on a loop."""
    prefix = root
    for part in path[len(root) :].split("/"):
        if part:
            prefix = os.path.join(prefix, part)
            if os.path.islink(prefix):
                return True
    return False


def kernel(scratch_fd: int, link: str) -> int:
    """0 if the kernel resolves the symlink (it follows each one, as an application would),
    else the errno. Relative to the scratch directory: only the tree's symlinks count."""
    try:
        os.stat(f"tree/{link}", dir_fd=scratch_fd)
    except OSError as e:
        return e.errno or -1
    return 0


def check_against_the_filesystem(scratch: Path, links: dict[str, str]) -> None:
    real_root = os.path.realpath(scratch / "tree")
    found = {p.path: p.kind for p in unsafe_links(links, DEFAULT_LIMITS.max_symlink_hops)}
    fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for link in sorted(links):
            mine = found.get(link)
            resolved = os.path.realpath(os.path.join(real_root, link))
            code = kernel(fd, link)
            why = (link, links, mine, resolved, errno.errorcode.get(code, code))
            if code == 0:
                # The kernel resolved it: exact agreement on where it leads.
                expected = None if inside(real_root, resolved) else LinkProblemKind.ESCAPES
                assert mine == expected, why
            elif code == errno.ELOOP:
                assert mine in (LinkProblemKind.LOOP, LinkProblemKind.TOO_MANY_HOPS), why
            else:
                # The kernel stopped at a missing name or a file; the resolver takes those as
                # they stand, as realpath does (a later apply may put something there).
                assert code in (errno.ENOENT, errno.ENOTDIR), why
                if mine is None:
                    assert inside(real_root, resolved), why
                    assert not unresolved(real_root, resolved), why
                elif mine is LinkProblemKind.ESCAPES:
                    assert not inside(real_root, resolved), why
    finally:
        os.close(fd)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tree=trees())
def test_the_resolver_agrees_with_the_filesystem(tmp_path: Path, tree: Tree) -> None:
    scratch = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        materialise(scratch / "tree", tree)
        check_against_the_filesystem(scratch, tree[2])
    finally:
        shutil.rmtree(scratch)


@pytest.mark.parametrize(
    "chain", [DEFAULT_LIMITS.max_symlink_hops, DEFAULT_LIMITS.max_symlink_hops + 1]
)
def test_the_hop_limit_is_the_kernels(tmp_path: Path, chain: int) -> None:
    # l0 -> l1 -> ... -> l(chain-1) -> file: following l0 takes `chain` symlinks.
    (tmp_path / "file").write_bytes(b"")
    links = {f"l{i}": f"l{i + 1}" for i in range(chain - 1)}
    links[f"l{chain - 1}"] = "file"
    for path, target in links.items():
        os.symlink(target, tmp_path / path)
    refused = unsafe_links(links, DEFAULT_LIMITS.max_symlink_hops)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.stat("l0", dir_fd=fd)  # from the directory itself: only the chain's links count
        kernel_refuses = False
    except OSError as e:
        assert e.errno == errno.ELOOP
        kernel_refuses = True
    finally:
        os.close(fd)
    assert bool(refused) is kernel_refuses
    assert kernel_refuses is (chain > DEFAULT_LIMITS.max_symlink_hops)
