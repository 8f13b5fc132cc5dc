"""``steppatch foothold info``: the library's value rendered as text, or printed with its format
tag by ``--json`` (``steppatch-foothold-info/1``), which reads back as the same value."""

from __future__ import annotations

import json
import sys

from steppatch.foothold import INFO_FORMAT, foothold_info, parse_foothold_info
from tests.e2e.conftest import Run


def test_info_json_carries_its_format_and_reads_back(run: Run) -> None:
    done = run("foothold", "info", "--check", "--json")
    doc = json.loads(done.out)
    assert doc["format"] == INFO_FORMAT == "steppatch-foothold-info/1"
    said = parse_foothold_info(done.out.encode(), "foothold info")
    here = foothold_info()
    assert said.foothold is None and said.executable == sys.executable
    assert (said.steppatch, said.python, said.platform) == (here.steppatch, here.python,
                                                            here.platform)
    assert said.check is not None and said.check.modules >= 4
    assert json.loads(run("foothold", "info", "--json").out)["check"] is None


def test_info_text(run: Run) -> None:
    out = run("foothold", "info", "--check").out
    here = foothold_info()
    assert f"steppatch {here.steppatch}, installed (not a foothold)" in out
    assert f"Python {here.python} ({sys.executable}), {here.platform}" in out
    assert "modules import" in out
