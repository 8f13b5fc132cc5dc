"""The layers (CLI -> orchestration -> edges -> core) and what start-up loads, checked.

The contracts live in pyproject.toml ([tool.importlinter]); import-linter follows indirect
imports, so a core module reaching requests through another module fails here too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("requests", "aiohttp", "typer", "rich", "urllib3", "cryptography", "jinja2")


def test_import_contracts_are_kept() -> None:
    pytest.importorskip("importlinter")
    # a subprocess: import-linter reads pyproject.toml from the working directory and prints
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports;"
         " sys.exit(lint_imports(no_cache=True, no_logo=True))"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


@pytest.mark.parametrize(
    "module",
    ["steppatch", "steppatch.model", "steppatch.recipe", "steppatch.solver", "steppatch.trust",
     "steppatch.limits", "steppatch.formats", "steppatch.plan", "steppatch.config",
     "steppatch.fleet"],
)
def test_importing_the_library_loads_no_heavy_dependency(module: str) -> None:
    code = (
        f"import sys, {module}; "
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


def test_lazy_exports_resolve_to_their_modules() -> None:
    import steppatch
    import steppatch.cluster
    import steppatch.foothold
    import steppatch.home
    import steppatch.repo
    import steppatch.server
    import steppatch.transport
    import steppatch.trust

    for package in (steppatch, steppatch.cluster, steppatch.foothold, steppatch.home,
                    steppatch.repo, steppatch.server, steppatch.transport, steppatch.trust):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
        assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError):
        steppatch.NoSuchThing  # noqa: B018


def test_mirror_fleet_loads_no_network_or_template_library() -> None:
    # `mirror fleet` on a mirror's store: the store read, nothing sent, no page rendered.
    code = (
        "import sys, steppatch.server._fleet, steppatch.fleet; "
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""
