"""Turning library results into terminal output: tables, plans, JSON, progress.

Nothing here decides anything; it only shows what the library returned.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from steppatch.config import MirrorEntry
    from steppatch.model import HomeState
    from steppatch.offline import PatchInfo
    from steppatch.plan import Drift, Plan
    from steppatch.updater import ApplyReport, Update

# What rich would change in a plain string: markup tags and :emoji: codes.
_RICH_SYNTAX = re.compile(r"\[|:[\w+-]+:")


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

            self._console = Console(stderr=self._stderr, highlight=False, soft_wrap=True)
        return self._console

    @property
    def is_terminal(self) -> bool:
        return self.stream.isatty()

    def print(self, value: object = "", *, markup: bool = True) -> None:
        """A line: plain text directly, anything else (a table, markup) through rich."""
        if isinstance(value, str) and not (markup and _RICH_SYNTAX.search(value)):
            self.stream.write(value + "\n")
            self.stream.flush()
        else:
            self.console.print(value, markup=markup)


out = Output()
err = Output(stderr=True)


def new_table(title: str) -> Table:
    from rich.table import Table

    return Table(title=title, title_justify="left")


def print_json(value: Any) -> None:
    """JSON on stdout, for scripts."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


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
        "size": size,
    }


def show_patch(info: PatchInfo) -> None:
    from steppatch.plan import component_changes

    changes = component_changes(info.base, info.target, ())
    if not changes:
        out.print("It changes nothing.")
    for c in changes:
        out.print(f"  {c}", markup=False)


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


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Any]:
    """A callback for :class:`steppatch.Home` progress, drawn on stderr when it is a terminal.

    Downloads show bytes, rate and time left; staging shows entries.
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
            else:
                detail = f"{done}/{total}"
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, detail=detail)
            bar.update(tasks[stage], completed=done, total=total, detail=detail)

        yield update
