"""The admin port's pages: the fleet (``/``), one system (``/systems/NAME``), the store
(``/store``). Server-rendered from the Jinja2 templates in ``templates/`` with autoescaping on
for every template: names, versions and release notes from outside are text, never markup. No
JavaScript; one stylesheet (``/fleet.css``); a Content-Security-Policy that allows nothing else.

Jinja2 is imported here only, when the admin application is built.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.resources
from typing import Any

import jinja2
from aiohttp import web

from steppatch.clock import utcnow
from steppatch.errors import SteppatchError
from steppatch.fleet import Fleet, FleetState, release_notes
from steppatch.pki import validate_system_name
from steppatch.server._service import MirrorService, Service
from steppatch.server._store import store_usage

__all__ = ["add_pages", "fleet_metrics", "page_environment"]

#: every page: its stylesheet from this port, nothing else (no script, no frame, no form)
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _ago(seconds: float) -> str:
    s = int(max(seconds, 0))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit}"
    return f"{s} s"


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def page_environment() -> jinja2.Environment:
    """The templates shipped in ``steppatch/server/templates``, autoescaped (all of them,
    whatever their name), undefined names an error."""
    folder = importlib.resources.files("steppatch.server") / "templates"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ago"] = _ago
    env.filters["when"] = _when
    env.filters["bytes"] = _bytes
    return env


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(
        text=text, status=status, content_type="text/html", charset="utf-8", headers=_HEADERS
    )


def fleet_metrics(service: Service, fleet: Fleet) -> None:
    """Systems per state, and per system the components behind, as gauges."""
    metrics = service.metrics
    counts = fleet.counts()
    metrics.replace("fleet_systems", {(("state", k),): float(v) for k, v in counts.items()})
    metrics.replace(
        "fleet_components_behind",
        {(("system", s.name),): float(s.behind) for s in fleet.systems},
    )


def add_pages(app: web.Application, service: Service) -> None:
    """Add ``/``, ``/systems/{name}``, ``/store`` and ``/fleet.css`` to the admin ``app``."""
    env = page_environment()
    overview = env.get_template("overview.html")
    system_page = env.get_template("system.html")
    store_page = env.get_template("store.html")
    missing = env.get_template("missing.html")
    css = (importlib.resources.files("steppatch.server") / "templates" / "fleet.css").read_text(
        "utf-8"
    )

    async def index(request: web.Request) -> web.Response:
        fleet, unreadable = await service.blocking(service.fleet.fleet)
        fleet_metrics(service, fleet)
        return _html(overview.render(
            title="Fleet", fleet=fleet, counts=fleet.counts(), unreadable=unreadable,
            states=list(FleetState),
        ))

    async def system(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        valid = True
        try:
            for part in name.split("/"):
                validate_system_name(part)
        except SteppatchError:
            valid = False
        found = None
        if valid:
            fleet, _unreadable = await service.blocking(
                functools.partial(service.fleet.fleet, only=name)
            )
            found = fleet.get(name)
        if found is None:
            return _html(missing.render(title="Not found", name=name), status=404)
        index, _version = service.fleet_index()
        notes = {c.name: release_notes(index, c) for c in found.components if c.newer}
        return _html(system_page.render(
            title=found.name, system=found, now=fleet.now, notes=notes,
        ))

    async def store(request: web.Request) -> web.Response:
        health = service.health()
        objects, size = await service.blocking(store_usage, service.config.store)
        upstreams: list[dict[str, Any]] = []
        state: dict[str, Any] = {}
        if isinstance(service, MirrorService):
            errors = service.upstreams.errors()
            down = set(service.upstreams.down())
            for u in sorted(service.config.upstreams, key=lambda u: -u.priority):
                upstreams.append({
                    "id": u.id, "url": u.url, "priority": u.priority,
                    "state": "down" if u.id in down else ("failing" if u.id in errors else "ok"),
                    "error": errors.get(u.id, ""),
                })
            state = service.store.state
        fleet, _unreadable = await service.blocking(service.fleet.fleet)
        return _html(store_page.render(
            title="Store", health=health, objects=objects, size=size, upstreams=upstreams,
            bulk=sorted({**state.get("bulk", {}), **health.get("bulk", {})}.items()),
            last_poll=state.get("last_refresh", ""), systems=len(fleet.systems),
            config=service.config, now=utcnow(),
        ))

    async def stylesheet(request: web.Request) -> web.Response:
        return web.Response(
            text=css, content_type="text/css", charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=300"},
        )

    app.router.add_get("/", index)
    app.router.add_get("/systems/{name:.+}", system)
    app.router.add_get("/store", store)
    app.router.add_get("/fleet.css", stylesheet)
