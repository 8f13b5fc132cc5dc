"""Building component sources and repositories for tests, from plain Python values."""

from __future__ import annotations

import io
import json
import os
import random
import zipfile
from pathlib import Path

from steppatch import Home, Repository
from steppatch.zipdelta import make_delta

#: a file's content, ("link", target), or ("dir", mode)
Spec = bytes | tuple[str, str] | tuple[str, int]


def component(
    root: Path,
    name: str,
    version: str,
    files: dict[str, Spec],
    *,
    deps: dict[str, str] | None = None,
    hot: bool = False,
    extra_toml: str = "",
) -> Path:
    """Write a component source directory and return it."""
    src = root / f"{name}-{version}"
    (src / "files").mkdir(parents=True)
    lines = [f'name = "{name}"', f'version = "{version}"', f"hot = {json.dumps(hot)}"]
    lines.append(extra_toml)
    if deps:
        lines.append("[dependencies]")
        lines.extend(f'{dep} = "{spec}"' for dep, spec in deps.items())
    (src / "component.toml").write_text("\n".join(lines) + "\n")
    for path, spec in files.items():
        target = src / "files" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(spec, bytes):
            target.write_bytes(spec)
        elif spec[0] == "link":
            os.symlink(str(spec[1]), target)
        else:
            target.mkdir(exist_ok=True)
            target.chmod(int(spec[1]))
    return src


def repository(root: Path, *sources: Path) -> Repository:
    """A repository at ``root / "repo"`` holding ``sources``."""
    repo = Repository.init(root / "repo")
    for source in sources:
        repo.add(source)
    return repo


def home_for(repo: Repository, path: Path) -> Home:
    """A new home trusting ``repo``'s root."""
    return Home.init(path, updates=repo.root.as_uri(), root=(repo.root / "root.json").read_bytes())


def tree(root: Path) -> dict[str, object]:
    """Every entry below ``root``: kind, mode and content or link target (for equality)."""
    found: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            if p.is_symlink():
                found[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                found[rel] = ("dir", st.st_mode & 0o7777)
            else:
                found[rel] = ("file", st.st_mode & 0o7777, p.read_bytes())
    return found


def jar_bytes(seed: int, changed: int | None = None) -> bytes:
    """A zip of 40 text-like members (deflated) and one stored; member ``changed`` differs."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(40):
            rng = random.Random(seed * 1000 + i)
            words = [rng.choice(["alpha", "beta", "gamma", "delta", "class", "void"])
                     for _ in range(6000)]  # fmt: skip
            if i == changed:
                words[100:110] = ["CHANGED"] * 10
            info = zipfile.ZipInfo(f"pkg/m{i:02d}.class", (2020, 1, 1, 0, 0, 0))
            z.writestr(info, " ".join(words), zipfile.ZIP_DEFLATED)
        z.writestr(zipfile.ZipInfo("META-INF/raw", (2020, 1, 1, 0, 0, 0)), b"x" * 5000,
                   zipfile.ZIP_STORED)  # fmt: skip
    return buf.getvalue()


def zip_delta_between(
    d: Path,
    old: bytes,
    new: bytes,
    *,
    name: str = "d",
    budget: int = 1 << 20,
    max_length: int | None = None,
    max_member_bytes: int = 1 << 20,
    frame_levels: tuple[int, int] | None = None,
) -> tuple[int, int] | None:
    """The version 2 zip delta from the archive ``old`` to ``new`` (written as ``d / "old.zip"``
    and ``d / "new.zip"``) at ``d / name``, as ``make_delta`` returns it (zstd level 9; no
    longer than ``new`` unless ``max_length`` says)."""
    (d / "old.zip").write_bytes(old)
    (d / "new.zip").write_bytes(new)
    return make_delta(
        d / "old.zip", d / "new.zip", d / name, max_length=max_length or len(new),
        max_member_bytes=max_member_bytes, budget=budget, level=9, frame_levels=frame_levels,
    )  # fmt: skip
