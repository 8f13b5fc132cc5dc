"""Property: the CLI's plain tables are drawn exactly as rich draws them, or handed to rich.

`render.PlainTable` draws tables without importing rich (start-up); whatever it draws must be
byte for byte what rich prints for the same table off a terminal, and on a terminal the same
text with rich's title and header styles.
"""

from __future__ import annotations

import io
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from steppatch_cli.render import PlainTable

# Printable ASCII without "[" (rich would read it as markup in its own tables; ours escape it).
TEXT = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="["),
    max_size=12,
)


@st.composite
def tables(draw: st.DrawFn) -> PlainTable:
    table = PlainTable(draw(TEXT))
    n = draw(st.integers(1, 5))
    for _ in range(n):
        table.add_column(draw(TEXT.filter(bool)), justify=draw(st.sampled_from(["left", "right"])))
    for _ in range(draw(st.integers(0, 4))):
        table.add_row(*(draw(TEXT) for _ in range(n)))
    return table


def rich_text(table: PlainTable, width: int, terminal: bool) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, highlight=False, soft_wrap=True,
                      force_terminal=terminal, color_system="standard" if terminal else None)
    console.print(table.to_rich())
    return buffer.getvalue()


@settings(max_examples=300, deadline=None)
@given(tables(), st.integers(10, 120))
def test_plain_tables_are_what_rich_prints(table: PlainTable, width: int) -> None:
    lines = table.lines(width)
    if lines is None:  # too wide (rich wraps it), or a cell rich would trim
        too_wide = sum(len(c) for c in _widest(table)) + 3 * len(table.columns) + 1 > width
        cells = [table.title, *(h for h, _ in table.columns), *(c for r in table.rows for c in r)]
        assert too_wide or len(table.title) > width or any(c != c.strip() for c in cells)
        return
    assert "\n".join(lines) + "\n" == rich_text(table, width, terminal=False)


@settings(max_examples=100, deadline=None)
@given(tables())
def test_on_a_terminal_the_text_is_the_same_and_styled(table: PlainTable) -> None:
    lines = table.lines(200, styled=True)
    if lines is None:
        return
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    plain = [ansi.sub("", line) for line in lines]
    assert "\n".join(plain) + "\n" == rich_text(table, 200, terminal=False)
    assert ansi.sub("", rich_text(table, 200, terminal=True)) == "\n".join(plain) + "\n"
    header = lines[2] if table.title else lines[1]
    assert header.count("\x1b[1m") == len(table.columns)


def test_text_that_is_not_plain_ascii_goes_to_rich() -> None:
    table = PlainTable("Nodes")
    table.add_column("name")
    table.add_row("Zürich-名")
    assert table.lines(200) is None
    assert "Zürich-名" in rich_text(table, 200, terminal=False)


def test_cells_are_text_not_markup() -> None:
    table = PlainTable("Mirrors [bold]")
    table.add_column("url")
    table.add_row("https://[::1]:8443/ [eu]")
    lines = table.lines(200)
    assert lines is not None and "[eu]" in lines[4] and lines[0] == "Mirrors [bold]"
    assert "[eu]" in rich_text(table, 20, terminal=False)  # rich's copy escapes it too


def _widest(table: PlainTable) -> list[str]:
    cells = [[h for h, _ in table.columns], *table.rows]
    return [max((row[i] for row in cells), key=len) for i in range(len(table.columns))]
