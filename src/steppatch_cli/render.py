"""Turning library results into terminal output: tables, plans, JSON, progress.

Nothing here decides anything; it only shows what the library returned.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from steppatch.cluster import ClusterReport, ClusterStatus
    from steppatch.commands import MadePatch, NodeRow
    from steppatch.config import MirrorEntry
    from steppatch.foothold import Foothold
    from steppatch.model import HomeState
    from steppatch.offline import PatchInfo
    from steppatch.plan import Drift, Plan
    from steppatch.selfupdate import MirrorUpgrade, SelfUpdate
    from steppatch.transport import PingCheck
    from steppatch.updater import ApplyReport, Update

# What rich would change in a plain string: markup tags and :emoji: codes.
_RICH_SYNTAX = re.compile(r"\[|:[\w+-]+:")


#: The width off a terminal (a pipe, a file) when COLUMNS is not set: lines are not wrapped, so a
#: table row stays one line for grep and awk, and a table with a long URL needs no wrapping
#: (rich would wrap at 80 columns, and importing it is a third of a command's start).
UNWRAPPED_WIDTH = 100_000


class Output:
    """A terminal stream that imports rich only for what needs it (tables, markup, progress):
    a plain line is written as it is, which is what rich would print for it, and start-up is
    a feature (the commands that print a line or two never load rich)."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def stream(self) -> TextIO:
        return sys.stderr if self._stderr else sys.stdout

    @property
    def console(self) -> Console:
        """The rich console on this stream (made on first use)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                stderr=self._stderr, highlight=False, soft_wrap=True,
                width=None if self.is_terminal or os.environ.get("COLUMNS") else UNWRAPPED_WIDTH,
            )
        return self._console

    @property
    def is_terminal(self) -> bool:
        return self.stream.isatty()

    def print(self, value: object = "", *, markup: bool = True) -> None:
        """A line: plain text directly, anything else (a table, markup) through rich."""
        if isinstance(value, PlainTable):
            lines = value.lines(self.width, styled=self.is_terminal and _styles())
            if lines is None:
                self.console.print(value.to_rich())
                return
            value = "\n".join(lines)
            markup = False
        if isinstance(value, str) and not (markup and _RICH_SYNTAX.search(value)):
            self.stream.write(value + "\n")
            self.stream.flush()
        else:
            self.console.print(value, markup=markup)

    @property
    def width(self) -> int:
        """The width of a line: ``COLUMNS``, else the terminal's, else (a pipe, a file) no limit
        (:data:`UNWRAPPED_WIDTH`)."""
        if self._console is not None:
            return self._console.width
        try:
            return max(int(os.environ.get("COLUMNS", "")), 1)
        except ValueError:
            pass
        if self.is_terminal:
            with contextlib.suppress(OSError):
                return os.get_terminal_size(self.stream.fileno()).columns
            return 80
        return UNWRAPPED_WIDTH


out = Output()
err = Output(stderr=True)


class PlainTable:
    """A table drawn as rich draws its default one (heavy head, title on the left), without
    importing rich: rich's import is a third of a command's start. Tables that do not fit the
    width, or hold text whose width is not one column a character, are handed to rich, which
    wraps them. Cells are text, never markup."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.columns: list[tuple[str, str]] = []
        self.rows: list[tuple[str, ...]] = []

    def add_column(self, header: str, justify: str = "left") -> None:
        self.columns.append((header, justify))

    def add_row(self, *cells: str) -> None:
        self.rows.append(tuple(cells))

    def lines(self, width: int, *, styled: bool = False) -> list[str] | None:
        """The table's lines, or None when rich must draw it (too wide, or not plain text);
        ``styled``: the title in italics and the header in bold, as rich shows them."""
        cells = [[h for h, _ in self.columns], *self.rows]
        if not all(_plain(c) for row in cells for c in row) or not _plain(self.title):
            return None
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        if sum(widths) + 3 * len(widths) + 1 > width or len(self.title) > width:
            return None

        def rule(left: str, fill: str, mid: str, right: str) -> str:
            return left + mid.join(fill * (w + 2) for w in widths) + right

        def row(bar: str, values: Sequence[str], style: str = "") -> str:
            padded = (
                v.rjust(w) if justify == "right" else v.ljust(w)
                for v, w, (_, justify) in zip(values, widths, self.columns, strict=True)
            )
            return bar + bar.join(_styled(f" {v} ", style) for v in padded) + bar

        title = [_styled(self.title, _ITALIC if styled else "")] if self.title else []
        return [
            *title,
            rule("┏", "━", "┳", "┓"),
            row("┃", cells[0], _BOLD if styled else ""),
            rule("┡", "━", "╇", "┩"),
            *(row("│", r) for r in self.rows),
            rule("└", "─", "┴", "┘"),
        ]

    def to_rich(self) -> Table:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(self.title), title_justify="left")
        for header, justify in self.columns:
            table.add_column(Text(header), justify=justify)  # type: ignore[arg-type]
        for r in self.rows:
            table.add_row(*map(Text, r))
        return table


def _plain(text: str) -> bool:
    # rich trims the ends of a cell before it justifies it: such cells are left to rich
    return text.isascii() and text.isprintable() and text == text.strip()


_BOLD, _ITALIC, _RESET = "\x1b[1m", "\x1b[3m", "\x1b[0m"


def _styled(text: str, style: str) -> str:
    return f"{style}{text}{_RESET}" if style and text else text


def _styles() -> bool:
    """Whether a terminal gets bold and italics (rich draws none on a dumb one)."""
    return os.environ.get("TERM", "").lower() not in ("dumb", "unknown")


def new_table(title: str) -> PlainTable:
    return PlainTable(title)


def print_json(value: Any, *, compact: bool = False) -> None:
    """JSON on stdout, for scripts (``compact``: on one line, for large documents)."""
    indent = None if compact else 2
    sys.stdout.write(json.dumps(value, indent=indent, sort_keys=True) + "\n")


def patch_json(info: PatchInfo, size: int) -> dict[str, Any]:
    from steppatch.plan import component_changes

    changes = component_changes(info.base, info.target, ())
    return {
        "environment": info.environment,
        "system": info.system,
        "fingerprint": info.fingerprint,
        "refs": list(info.refs),
        "changes": [
            {"name": c.name, "from": None if c.old is None else str(c.old),
             "to": None if c.new is None else str(c.new)}
            for c in changes
        ],
        "objects": info.objects,
        "object_bytes": info.object_bytes,
        "delta_objects": info.delta_objects,
        "delta_bytes": info.delta_bytes,
        "size": size,
    }


def show_patch(info: PatchInfo) -> None:
    from steppatch.plan import component_changes

    changes = component_changes(info.base, info.target, ())
    if not changes:
        out.print("It changes nothing.")
    for c in changes:
        out.print(f"  {c}", markup=False)


def show_patch_made(made: MadePatch) -> None:
    """An offline patch file just written."""
    info = made.info
    out.print(
        f"Wrote {made.path}: {made.size} bytes, {info.objects} object(s) the installation lacks, "
        f"for {info.system or 'an unnamed system'} ({info.environment})"
    )
    show_patch(info)


def report_json(report: ApplyReport) -> dict[str, Any]:
    value = plan_json(report.plan)
    value.update(
        displaced=list(report.displaced),
        config_findings=[
            {"component": f.component, "key": f.key, "line": f.line,
             "instruction": f.instruction}
            for f in report.config_findings
        ],
        restarted=report.restarted,
        snapshot_drift=None if report.snapshot_drift is None else drift_json(
            report.snapshot_drift
        ),
        snapshot_upload=report.upload,
        gc=None if report.collected is None else report.collected.to_json(),
    )
    return value


def mirrors_json(listed: list[tuple[MirrorEntry, bool]]) -> dict[str, Any]:
    return {
        "mirrors": [
            {"priority": m.priority, "id": m.id, "name": m.name, "url": m.url, "selected": sel}
            for m, sel in listed
        ]
    }


def show_mirrors(listed: list[tuple[MirrorEntry, bool]]) -> None:
    table = new_table("Mirrors (tried in this order)")
    for column in ("priority", "id", "name", "url", "selected"):
        table.add_column(column)
    for m, selected in listed:
        table.add_row(str(m.priority), m.id, m.name, m.url, "*" if selected else "")
    out.print(table)


def ping_json(checks: Sequence[PingCheck]) -> dict[str, Any]:
    return {"checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]}


def show_ping(checks: Sequence[PingCheck]) -> None:
    for c in checks:
        mark = "ok    " if c.ok else "FAILED"
        out.print(f"{mark} {c.name}: {c.detail}", markup=False)


def report(result: ApplyReport, *, json_out: bool) -> None:
    """What an apply or rollback did, as JSON or for a person."""
    if json_out:
        print_json(report_json(result))
    else:
        show_report(result)


def show_report(report: ApplyReport) -> None:
    show_plan(report.plan, applied=True)
    if report.upload.startswith("failed"):
        err.print(f"warning: thin snapshot upload {report.upload}", markup=False)
    if report.displaced:
        out.print(
            f"{len(report.displaced)} file(s) you had added stood where the new version needs "
            "the path; they are kept under .steppatch/displaced/:"
        )
        for path in report.displaced:
            out.print(f"  {path}", markup=False)
    if report.config_findings:
        out.print("config.properties needs these corrections before the next start:")
        for finding in report.config_findings:
            out.print(f"  {finding}", markup=False)
    if report.snapshot_drift:
        out.print("The tree differs from the files the full snapshot recorded:")
        show_drift(report.snapshot_drift)
    if report.collected is not None and (report.collected.bytes or report.collected.history):
        out.print(report.collected.summary(), markup=False)


def drift_json(drift: Drift) -> dict[str, Any]:
    return {
        "changed": list(drift.changed),
        "missing": list(drift.missing),
        "extra": list(drift.extra),
        "drift": bool(drift),
    }


def show_drift(drift: Drift) -> None:
    if not drift:
        out.print("No drift: every managed file matches its manifest.")
        return
    for label, paths in (("changed", drift.changed), ("missing", drift.missing),
                         ("extra", drift.extra)):
        for path in paths:
            out.print(f"{label:8} {path}", markup=False)
    out.print(
        f"{len(drift.changed)} changed, {len(drift.missing)} missing, {len(drift.extra)} extra"
    )


def plan_json(plan: Plan) -> dict[str, Any]:
    from steppatch.formats import plan_to_json

    return plan_to_json(plan)


def show_plan(plan: Plan, *, applied: bool) -> None:
    if plan.empty:
        out.print("Nothing to do: the home already has these versions.")
        return
    if not plan.changes:
        verb = "Repaired" if applied else "Would repair"
        out.print(f"{verb} {plan.repairs} drifted path(s); the versions stay as they are.")
        return
    from steppatch.plan import ChangeReason

    table = new_table("Applied" if applied else "Plan")
    table.add_column("component")
    table.add_column("installed")
    table.add_column("new")
    table.add_column("why")
    for c in plan.changes:
        why = {
            ChangeReason.REQUESTED: "requested",
            ChangeReason.DEPENDENCY: "moved by a dependency",
            ChangeReason.REMOVED: "not in the snapshot",
        }[c.reason]
        table.add_row(
            c.name,
            "-" if c.old is None else str(c.old),
            "(removed)" if c.new is None else str(c.new),
            why,
        )
    out.print(table)
    if plan.repairs:
        out.print(f"... and {plan.repairs} drifted path(s) restored to their manifests.")
    if not applied:
        out.print(
            f"Downloaded {plan.download_objects} object(s), {plan.download_bytes} bytes, "
            "into the cache; the managed tree is untouched."
        )
    used = {r: nb for r, nb in plan.routes.items() if nb[0]}
    if used and (set(used) != {"whole"} or plan.fallbacks):
        parts = ", ".join(f"{r} {n} object(s) {b} bytes" for r, (n, b) in sorted(used.items()))
        fell = f" ({plan.fallbacks} fell back to whole objects)" if plan.fallbacks else ""
        out.print(f"Transferred by route: {parts}{fell}.")


def state_json(state: HomeState) -> dict[str, Any]:
    return {"components": {n: str(v) for n, v in state.versions().items()}}


def show_status(state: HomeState, home: str) -> None:
    versions = state.versions()
    if not versions:
        out.print(f"{home}: no components installed.")
        return
    table = new_table(f"Installed in {home}")
    table.add_column("component")
    table.add_column("version")
    table.add_column("files", justify="right")
    for name, c in sorted(state.components.items()):
        table.add_row(name, str(c.version), str(sum(1 for _ in c.manifest.files())))
    out.print(table)


def updates_json(updates: list[Update]) -> dict[str, Any]:
    return {
        "components": {
            u.name: {
                "installed": str(u.installed),
                "available": [
                    {"version": str(cv.version), "summary": cv.summary, "notes": cv.notes,
                     "hot": cv.hot, "recipe": cv.recipe}
                    for cv in u.available
                ],
            }
            for u in updates
        }
    }


def show_updates(updates: list[Update]) -> None:
    any_new = False
    for u in updates:
        if not u.available:
            out.print(f"{u.name} {u.installed}: up to date")
            continue
        any_new = True
        out.print(f"[bold]{u.name}[/bold] {u.installed}: {len(u.available)} newer version(s)")
        for cv in u.available:
            hot = " (hot)" if cv.hot else ""
            out.print(f"  {cv.version}{hot}  apply with: steppatch apply to:{cv.recipe}")
            for line in cv.notes.strip().splitlines():
                out.print(f"      {line}", markup=False)
    if not updates:
        out.print("No components installed.")
    elif not any_new:
        out.print("Everything is up to date.")


# --- clusters ---------------------------------------------------------------------------------


def nodes_json(rows: Sequence[NodeRow]) -> dict[str, Any]:
    return {
        "nodes": [
            {"name": r.name, "location": r.location, "command": r.command, "self": r.is_self}
            for r in rows
        ]
    }


def show_nodes(rows: Sequence[NodeRow]) -> None:
    table = new_table("Cluster nodes")
    for column in ("name", "location", "this node"):
        table.add_column(column)
    for r in rows:
        table.add_row(r.name, r.location, "*" if r.is_self else "")
    out.print(table)


def cluster_status_json(status: ClusterStatus) -> dict[str, Any]:
    return {
        "consistent": status.consistent,
        "nodes": [
            {
                "name": n.name,
                "location": n.location,
                "self": n.is_self,
                "components": None
                if n.versions is None
                else {c: str(v) for c, v in sorted(n.versions.items())},
                "error": n.error or None,
            }
            for n in status.nodes
        ],
    }


def show_cluster_status(status: ClusterStatus) -> None:
    from steppatch.cluster import versions_text

    table = new_table("Cluster status")
    for column in ("node", "location", "versions"):
        table.add_column(column)
    for n in status.nodes:
        versions = versions_text(n.versions) if n.versions is not None else f"UNKNOWN: {n.error}"
        name = f"{n.name} (this node)" if n.is_self else n.name
        table.add_row(name, n.location, versions)
    out.print(table)
    if status.consistent:
        out.print(f"Consistent: all {len(status.nodes)} node(s) at the same versions.")
    elif status.unreachable:
        out.print("Not known to be consistent: a node could not be asked.")
    else:
        out.print("MIXED: the nodes are not at the same versions.")


def cluster_report_json(report: ClusterReport) -> dict[str, Any]:
    value = plan_json(report.plan)
    value["nodes"] = [
        {"name": o.name, "switched": o.switched, "restarted": o.restarted} for o in report.nodes
    ]
    value["snapshot_upload"] = report.upload
    return value


def show_cluster_report(report: ClusterReport) -> None:
    show_plan(report.plan, applied=True)
    switched = [o.name for o in report.nodes if o.switched]
    if switched:
        out.print(f"Switched {len(switched)} node(s): {', '.join(switched)}")
    unchanged = [o.name for o in report.nodes if not o.switched]
    if unchanged and switched:
        out.print(f"Already there: {', '.join(unchanged)}")
    if report.upload.startswith("failed"):
        err.print(f"warning: cluster snapshot upload {report.upload}", markup=False)


def mixed_warning(status: ClusterStatus) -> str:
    """The warning after an ``apply --local`` leaves the cluster mixed (empty if it is not)."""
    if len(status.nodes) < 2 or status.consistent:
        return ""
    groups = "; ".join(f"{', '.join(names)} at {text}" for text, names in status.groups())
    return (
        f"warning: the cluster is now mixed ({groups}); patch the other nodes with "
        "'apply --local' too, so that every node is at the same release"
    )


# --- the tool itself ------------------------------------------------------------------------------


def foothold_json(built: Foothold) -> dict[str, Any]:
    return {
        "path": str(built.path), "layout": built.layout.value, "version": built.version,
        "build": built.build, "steppatch": built.steppatch,
        "python_requires": built.python_requires, "size": built.size,
        "parts": [
            {"name": p.name, "version": p.version, "kind": p.kind, "detail": p.detail,
             "size": p.size}
            for p in built.parts
        ],
        "skipped": list(built.skipped),
    }


def self_update_json(result: SelfUpdate) -> dict[str, Any]:
    check = result.check
    return {
        "tool_home": str(result.tool_home),
        "from": None if result.old is None else str(result.old),
        "to": str(result.new),
        "changed": result.changed,
        "launcher": str(result.launcher),
        "check": None if check is None else {
            "version": check.version, "build": check.build, "python": check.python,
            "platform": check.platform,
        },
    }


def mirror_upgrade_json(result: MirrorUpgrade) -> dict[str, Any]:
    """``mirror upgrade --json``: the self-update's JSON and the server's restart."""
    restart = result.restart
    value = self_update_json(result.update)
    value["restart"] = None if restart is None else {
        "pid": restart.pid, "generation": restart.generation, "command": list(restart.command),
    }
    return value


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Any]:
    """A callback for :class:`steppatch.Home` progress, drawn on stderr when it is a terminal.

    Downloads show bytes, rate and time left; making deltas (``repo add``), bytes; staging,
    entries.
    """
    if not (enabled and err.is_terminal):
        yield None
        return
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description:10}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
        console=err.console,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}
        started: dict[str, float] = {}

        def update(stage: str, done: int, total: int) -> None:
            if not total:
                return
            elapsed = time.monotonic() - started.setdefault(stage, time.monotonic())
            if stage == "download":
                rate = done / elapsed / 2**20 if elapsed > 0 else 0.0
                detail = f"{done / 2**20:.1f}/{total / 2**20:.1f} MiB at {rate:.1f} MiB/s"
            elif stage == "deltas":
                detail = f"{done / 2**20:.1f}/{total / 2**20:.1f} MiB of new objects"
            else:
                detail = f"{done}/{total}"
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, detail=detail)
            bar.update(tasks[stage], completed=done, total=total, detail=detail)

        yield update
