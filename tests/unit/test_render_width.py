"""Off a terminal, lines are not wrapped: a wide table is drawn whole, without rich."""

from __future__ import annotations

import os
import subprocess
import sys

URL = "https://updates.example.com:8443/steppatch/a/long/path/to/the/published/repository"

DRAW = f"""
import sys
from steppatch_cli.render import PlainTable, out
table = PlainTable("Mirrors (tried in this order)")
for header in ("priority", "id", "name", "url", "selected"):
    table.add_column(header)
table.add_row("100", "primary", "eu", {URL!r}, "*")
out.print(table)
print("rich loaded:", "rich" in sys.modules, file=sys.stderr)
"""


def draw(columns: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run([sys.executable, "-c", DRAW], capture_output=True, text=True,
                          env=env, check=True)


def test_a_wide_table_in_a_pipe_is_one_line_a_row_without_rich() -> None:
    done = draw(None)
    lines = done.stdout.splitlines()
    assert len(lines) == 6 and URL in lines[4] and len(lines[4]) > 80
    assert done.stderr.strip() == "rich loaded: False"


def test_columns_still_sets_the_width_and_rich_wraps_what_does_not_fit() -> None:
    done = draw("60")
    assert URL not in done.stdout and all(len(line) <= 60 for line in done.stdout.splitlines())
    assert done.stderr.strip() == "rich loaded: True"
