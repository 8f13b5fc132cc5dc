"""Turning library results into terminal output: tables, plans, JSON, progress.

Nothing here decides anything; it only shows what the library returned.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from steppatch.model import HomeState
from steppatch.plan import ChangeReason, Plan
from steppatch.updater import Update

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    """JSON on stdout, for scripts."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "target": {n: str(v) for n, v in plan.target.items()},
        "changes": [
            {
                "name": c.name,
                "from": None if c.old is None else str(c.old),
                "to": None if c.new is None else str(c.new),
                "reason": c.reason.value,
            }
            for c in plan.changes
        ],
        "hot": plan.hot,
        "download_objects": plan.download_objects,
        "download_bytes": plan.download_bytes,
    }


def show_plan(plan: Plan, *, applied: bool) -> None:
    if plan.empty:
        out.print("Nothing to do: the home already has these versions.")
        return
    table = Table(title="Applied" if applied else "Plan", title_justify="left")
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
    table = Table(title=f"Installed in {home}", title_justify="left")
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
def progress_bar() -> Iterator[Any]:
    """A callback for :class:`steppatch.Home` progress, drawn on stderr when it is a terminal."""
    if not err.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage != "download":
                return
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None)

        yield update
