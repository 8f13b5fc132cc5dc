"""Where the symlinks of a managed tree lead, decided from its manifests alone (invariant 4).

The text of one symlink's target says little: ``up/..`` is the tree's root only if ``up`` is a
directory; if ``up`` is itself a symlink, ``..`` is taken from wherever ``up`` leads. So each
target is resolved one segment at a time against the tree's own symlinks, as the kernel does: a
segment that names a symlink is replaced by the place that symlink leads to, and ``..`` goes to
the parent of the place reached so far. A name the tree holds as a file, a directory or not at all
is taken as it stands, as ``os.path.realpath`` does: the kernel would stop at a file or a missing
name, so this is never more lenient than it, and an apply that later puts a symlink there is
checked again, with the tree it builds.

A symlink is refused when its target is absolute, when a ``..`` would step above the tree's root
(whatever the rest of the target, since the tree's own name is not known), when it loops, or when
following it needs more than ``max_hops`` symlinks (the kernel's ``ELOOP`` counts the same way,
every symlink followed along the way; Linux allows 40).

Pure: no I/O. Each symlink is resolved once and remembered (the place it leads to and the hops it
took), so the cost is O(total segments of all targets), not a walk per path prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from steppatch import _record as record
from steppatch.model import EntryKind, FileEntry

__all__ = ["LinkProblem", "LinkProblemKind", "symlinks_of", "unsafe_links"]


class LinkProblemKind(StrEnum):
    """Why a symlink is refused."""

    ESCAPES = "escapes"
    LOOP = "loop"
    TOO_MANY_HOPS = "too-many-hops"


@record.frozen
class LinkProblem:
    """The symlink at ``path`` (to ``target``) is refused for ``kind``.

    ``via`` is the symlink where it shows: the one whose target is absolute or steps above the
    root, the one that closes the loop, or the one whose hops run over the limit. It is ``path``
    itself unless the way leads through another symlink.
    """

    path: str
    target: str
    kind: LinkProblemKind
    via: str

    def describe(self) -> str:
        """One line for an error message."""
        through = "" if self.via == self.path else f" (through {self.via!r})"
        what = {
            LinkProblemKind.ESCAPES: "leads outside the managed tree",
            LinkProblemKind.LOOP: "loops",
            LinkProblemKind.TOO_MANY_HOPS: "follows too many symlinks",
        }[self.kind]
        return f"symlink {self.path!r} -> {self.target!r} {what}{through}"


def symlinks_of(entries: Iterable[FileEntry]) -> dict[str, str]:
    """The symlink entries of ``entries``: path to target."""
    return {e.path: e.target for e in entries if e.kind is EntryKind.SYMLINK and e.target}


# What a resolved symlink leads to: the place (a path relative to the root, "" for the root
# itself) and the symlinks followed to get there, itself included. A fault is a (kind, via) pair.
_Place = tuple[str, int]
_Fault = tuple[LinkProblemKind, str]
_PENDING: _Fault = (LinkProblemKind.LOOP, "")  # in the memo while a symlink is being resolved


def unsafe_links(links: Mapping[str, str], max_hops: int) -> tuple[LinkProblem, ...]:
    """Every symlink of ``links`` (path -> target, relative to the tree's root) that is refused,
    sorted by path; empty when every symlink stays inside the tree.

    The paths are a merged tree's: no symlink lies below another symlink (``merge_manifests`` and
    the manifest parser refuse that). Cost: O(total segments of all targets); memory O(links).
    """
    memo: dict[str, _Place | _Fault] = {}
    problems = []
    for path in sorted(links):
        done = _resolve(path, links, memo, max_hops)
        if isinstance(done[0], LinkProblemKind):
            problems.append(LinkProblem(path, links[path], done[0], str(done[1])))
    return tuple(problems)


class _Frame:
    """One symlink being resolved: where its target has led so far."""

    __slots__ = ("hops", "link", "next", "place", "segments")

    def __init__(self, link: str, target: str) -> None:
        self.link = link
        self.place = link.rpartition("/")[0]
        self.segments = target.split("/")
        self.next = 0
        self.hops = 1


def _resolve(
    start: str, links: Mapping[str, str], memo: dict[str, _Place | _Fault], max_hops: int
) -> _Place | _Fault:
    # An explicit stack, not recursion: a chain of 100,000 symlinks must not hit Python's
    # recursion limit before the hop count refuses it.
    known = memo.get(start)
    if known is not None:
        return known
    memo[start] = _PENDING
    stack = [_Frame(start, links[start])]
    result: _Place | _Fault | None = None
    while True:
        frame = stack[-1]
        if result is not None:  # the symlink pushed last is resolved: continue from its place
            result = _follow(frame, result, max_hops)
        if result is None:
            result, push = _walk(frame, links, memo, max_hops)
            if push is not None:
                memo[push] = _PENDING
                stack.append(_Frame(push, links[push]))
                continue
        assert result is not None
        memo[frame.link] = result
        stack.pop()
        if not stack:
            return result


def _follow(frame: _Frame, done: _Place | _Fault, max_hops: int) -> _Fault | None:
    """Move ``frame`` to where a symlink it met leads; the fault that ends it, if any."""
    if isinstance(done[0], LinkProblemKind):
        return (done[0], str(done[1]))
    place, hops = done
    frame.hops += int(hops)
    if frame.hops > max_hops:
        return (LinkProblemKind.TOO_MANY_HOPS, frame.link)
    frame.place = str(place)
    return None


def _walk(
    frame: _Frame, links: Mapping[str, str], memo: dict[str, _Place | _Fault], max_hops: int
) -> tuple[_Place | _Fault | None, str | None]:
    """Walk ``frame``'s remaining segments: its result, or a symlink to resolve first."""
    segments = frame.segments
    if frame.next == 0 and segments[0] == "":
        return (LinkProblemKind.ESCAPES, frame.link), None  # absolute (or empty)
    while frame.next < len(segments):
        segment = segments[frame.next]
        frame.next += 1
        if segment in ("", "."):
            continue
        if segment == "..":
            if not frame.place:
                return (LinkProblemKind.ESCAPES, frame.link), None
            frame.place = frame.place.rpartition("/")[0]
            continue
        child = f"{frame.place}/{segment}" if frame.place else segment
        if child not in links:
            frame.place = child
            continue
        known = memo.get(child)
        if known is None:
            return None, child
        if known is _PENDING:
            return (LinkProblemKind.LOOP, child), None
        fault = _follow(frame, known, max_hops)
        if fault is not None:
            return fault, None
    return (frame.place, frame.hops), None
