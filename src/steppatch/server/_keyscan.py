"""Before the server starts: no PEM private key may lie under the tree it serves.

The origin serves only the published layout (:mod:`._origin`), so a key put in the repository by
mistake is not served; but a repository that holds a key is a mistake waiting for the next web
server (nginx, a CDN sync) that serves the directory whole. So ``mirror serve`` refuses to start.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.server.config import MirrorConfig
from steppatch.server.errors import PrivateKeyServed

__all__ = ["check_no_private_keys", "find_private_key"]

# "-----BEGIN PRIVATE KEY-----", "... RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "OPENSSH ...".
_PEM_PRIVATE = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")

# Not read, in either tree: "objects" holds content-addressed file contents. A file there is
# served only under the sha256 a signed manifest names, so what is served from it is what the
# release engineer published, and a key that landed there by mistake is never served. Published
# components may well ship a sample or default key (a refusal would be wrong), and objects are
# nearly all of a repository's bytes (reading them would make the start O(repository size)).
# A mirror's "takeout" holds hard links to those same objects and metadata, in the
# repository's layout.
_SKIP_ORIGIN = frozenset({"objects"})
_SKIP_STORE = frozenset({"objects", "takeout"})


def find_private_key(
    tree: Path, skip: frozenset[str] = frozenset(), limits: Limits = DEFAULT_LIMITS
) -> Path | None:
    """The first regular file under ``tree`` (sorted walk; not into the top-level directories
    named in ``skip``) whose first ``limits.key_scan_head_bytes`` hold a PEM private key.

    Symlinks are not followed: the origin never serves one (``O_NOFOLLOW`` and a resolved-path
    check), a mirror's store holds none. Unreadable files are skipped: the server cannot serve
    them either. Cost: one bounded read per file outside ``skip``, O(recipes + manifests +
    metadata versions) for a repository.
    """
    for top, dirs, files in os.walk(tree):
        dirs.sort()
        if Path(top) == tree:
            dirs[:] = [d for d in dirs if d not in skip]
        for name in sorted(files):
            path = Path(top) / name
            try:
                # O_NONBLOCK: a FIFO someone left here must not hang the start.
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                if not _is_regular(fd):
                    continue
                head = os.read(fd, limits.key_scan_head_bytes)
            except OSError:
                continue
            finally:
                os.close(fd)
            if _PEM_PRIVATE.search(head):
                return path
    return None


def _is_regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def check_no_private_keys(config: MirrorConfig, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse to serve a tree that holds a private key: the origin's repository, or a mirror's
    store. Raises :class:`PrivateKeyServed` (a config error) naming the file."""
    if config.origin is not None:
        field, tree, skip = "origin.repository", config.origin.repository, _SKIP_ORIGIN
    else:
        field, tree, skip = "store", config.store, _SKIP_STORE
    tree = tree.absolute()
    found = find_private_key(tree, skip, limits)
    if found is not None:
        raise PrivateKeyServed(config.source, field, str(tree), str(found))
