"""The release engineer's signing keys, kept outside the published tree.

A key directory holds one PEM file per key, ``ROLE-KEYID8.pem`` (mode 0600); every key file of a
role is a current signing key of that role. Rotated-out keys move to ``retired/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from steppatch._fs import atomic_write
from steppatch.errors import ConfigError, KeysInsideRepository
from steppatch.trust import ROLES, SigningKey

__all__ = ["KeyRing", "check_outside", "default_key_dir"]


def default_key_dir(repository: Path) -> Path:
    """``/srv/repo`` -> ``/srv/repo.keys``: beside the repository (:func:`check_outside` makes
    sure it is not inside it)."""
    # abspath, not absolute(): "repo init .." must name "../..keys"'s sibling, not "..keys" under
    # the repository itself.
    repository = Path(os.path.abspath(repository))
    return repository.with_name(repository.name + ".keys")


def check_outside(key_dir: Path, repository: Path) -> None:
    """Refuse a key directory that is, or lies inside, the repository.

    Both paths are fully resolved (symlinks followed, ``..`` taken after them), so neither
    ``--keys ../repo/keys`` from another directory nor a symlink into the repository passes.
    Call it each time keys are placed or read: a symlink may change between two commands.
    Raises :class:`KeysInsideRepository`.
    """
    keys, repo = key_dir.resolve(), repository.resolve()
    if keys == repo or keys.is_relative_to(repo):
        raise KeysInsideRepository(str(key_dir), str(repository))


class KeyRing:
    """The signing keys of each role in a key directory."""

    def __init__(self, root: Path, keys: dict[str, list[SigningKey]]) -> None:
        self.root = root
        self.keys = keys

    @classmethod
    def create(cls, root: Path) -> KeyRing:
        """Make one new key per role in ``root`` (created, or an existing empty directory).

        Raises :class:`ConfigError` if ``root`` already holds keys.
        """
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if any(root.glob("*.pem")):
            raise ConfigError(str(root), "already holds keys: pass it with --keys to use them")
        ring = cls(root, {role: [] for role in ROLES})
        for role in ROLES:
            ring.add(role, SigningKey.generate())
        return ring

    @classmethod
    def load(cls, root: Path) -> KeyRing:
        """Read every role's keys. Raises :class:`ConfigError` if a role has none."""
        keys: dict[str, list[SigningKey]] = {role: [] for role in ROLES}
        if not root.is_dir():
            raise ConfigError(str(root), "no key directory here (give the right one with --keys)")
        for path in sorted(root.glob("*.pem")):
            role = path.name.partition("-")[0]
            if role in keys:
                keys[role].append(SigningKey.from_pem(path.read_bytes()))
        missing = [role for role in ROLES if not keys[role]]
        if missing:
            raise ConfigError(str(root), f"no signing key for {', '.join(missing)}")
        return cls(root, keys)

    def add(self, role: str, key: SigningKey) -> None:
        """Write a new key of ``role`` (mode 0600) and use it."""
        atomic_write(self.root / f"{role}-{key.keyid[:8]}.pem", key.to_pem(), mode=0o600)
        self.keys[role].append(key)

    def retire(self, role: str, keys: list[SigningKey]) -> None:
        """Move ``keys`` of ``role`` to ``retired/``: they sign nothing any more."""
        retired = self.root / "retired"
        retired.mkdir(exist_ok=True, mode=0o700)
        for key in keys:
            name = f"{role}-{key.keyid[:8]}.pem"
            os.replace(self.root / name, retired / name)
        gone = {key.keyid for key in keys}
        self.keys[role] = [key for key in self.keys[role] if key.keyid not in gone]
