"""The HTTP side: the service port (HTTPS, client certificate required) and the admin port.

Files are sent by hand on a :class:`aiohttp.web.StreamResponse` in 256 KiB writes: under TLS,
``FileResponse`` falls back to a small-chunk copy at half the speed (measured in DESIGN.md section
5), and immutable content makes Range and ETag simple.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import fcntl
import hmac
import json
import os
import signal
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from steppatch import pki
from steppatch.errors import LockedError, SteppatchError
from steppatch.server._keyscan import check_no_private_keys
from steppatch.server._metrics import Metrics
from steppatch.server._pages import add_pages, fleet_metrics
from steppatch.server._ranges import Unsatisfiable, etag_matches, parse_range
from steppatch.server._service import Service, make_service
from steppatch.server._store import Held
from steppatch.server.config import MirrorConfig, ServerTls
from steppatch.server.errors import (
    MirrorConfigError,
    NotServed,
    SnapshotRateLimited,
    SnapshotRefused,
    StoreError,
    StoreFull,
    UpstreamUnavailable,
)

__all__ = [
    "CHUNK", "TlsReloader", "admin_app", "serve", "server_ssl_context", "service_app",
]

CHUNK = 256 * 1024
_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1"
_SERVICE: web.AppKey[Service] = web.AppKey("service", Service)
_LOG: web.AppKey[IO[str] | None] = web.AppKey("log", object)  # type: ignore[arg-type]


def server_ssl_context(tls: ServerTls, source: str = "mirror.toml") -> ssl.SSLContext:
    """TLS 1.2+, ECDHE with AEAD ciphers, a client certificate issued by ``tls.client_ca``
    required and, with ``tls.crl``, not revoked. Raises :class:`MirrorConfigError` naming the
    ``tls`` field that is unusable."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_CIPHERS)
    # No session resumption: a resumed session skips the client certificate, so a revoked one
    # could go on with the tickets it holds. Our clients open few, long connections.
    ctx.options |= ssl.OP_NO_TICKET
    ctx.num_tickets = 0
    try:
        ctx.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as e:
        raise MirrorConfigError(source, "tls.cert", f"unusable certificate or key: {e}") from e
    try:
        ctx.load_verify_locations(cafile=tls.client_ca)
    except (OSError, ssl.SSLError) as e:
        raise MirrorConfigError(source, "tls.client_ca", f"unusable CA: {e}") from e
    ctx.verify_mode = ssl.CERT_REQUIRED
    if tls.crl is not None:
        _load_crl(ctx, tls, source)
    return ctx


def _load_crl(ctx: ssl.SSLContext, tls: ServerTls, source: str) -> None:
    assert tls.crl is not None
    try:
        crl, ca = tls.crl.read_bytes(), tls.client_ca.read_bytes()
    except OSError as e:
        raise MirrorConfigError(source, "tls.crl", f"cannot read: {e.strerror or e}") from e
    try:
        # OpenSSL would take an expired CRL, or one of another CA, and then refuse every
        # client: check it first, and say why.
        pki.read_crl(crl, ca, str(tls.crl))
        ctx.load_verify_locations(cafile=tls.crl)
    except (SteppatchError, OSError, ssl.SSLError) as e:
        raise MirrorConfigError(source, "tls.crl", f"unusable CRL: {e}") from e
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


class TlsReloader:
    """The service port's TLS settings, rebuilt when the CRL file changes.

    asyncio binds the listening socket to one :class:`ssl.SSLContext`; its server-name callback
    (which OpenSSL calls for every handshake, with or without SNI, before the client certificate
    is checked) moves each new connection to the newest context. A CRL that fails to load keeps
    the old context and is reported on stderr.
    """

    def __init__(self, tls: ServerTls, source: str) -> None:
        self.tls = tls
        self.source = source
        self._stamp = self._stat()
        self.base = server_ssl_context(tls, source)
        self.current = self.base
        self.base.sni_callback = self._choose

    def _choose(self, conn: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        current = self.current
        if current is not ctx:
            conn.context = current
        return None

    def _stat(self) -> tuple[int, ...] | None:
        if self.tls.crl is None:
            return None
        try:
            st = os.stat(self.tls.crl)
        except OSError:
            return ()
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)

    def poll(self) -> bool:
        """Reload if the CRL file changed since the last look; whether a new context is in use.
        Blocking (a stat, and a read on change): run it in the worker pool."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            ctx = server_ssl_context(self.tls, self.source)
        except MirrorConfigError as e:
            _event("tls-reload-failed", field=e.field, problem=e.problem)
            return False
        self.current = ctx
        _event("tls-reloaded", crl=str(self.tls.crl))
        return True

    async def watch(self) -> None:
        """Poll every ``crl_poll_s`` until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tls.crl_poll_s)
            await loop.run_in_executor(None, self.poll)


def _event(event: str, **fields: Any) -> None:
    sys.stderr.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stderr.flush()


def _client_system(request: web.Request) -> str | None:
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    try:
        info = pki.read_certificate(ssl.DER_cert_to_PEM_cert(der).encode(), "client certificate")
    except SteppatchError:
        return None
    return info.system_name


def _headers(held: Held) -> dict[str, str]:
    return {
        "ETag": held.etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": (
            "public, max-age=31536000, immutable" if held.immutable else "no-cache"
        ),
        "Content-Type": "application/octet-stream",
    }


async def send(request: web.Request, held: Held) -> web.StreamResponse:
    """Answer GET or HEAD for ``held`` with Range, If-None-Match and If-Range."""
    headers = _headers(held)
    if etag_matches(request.headers.get("If-None-Match"), held.etag):
        return web.Response(status=304, headers=headers)
    range_header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != held.etag:
        range_header = None
    try:
        wanted = parse_range(range_header, held.length)
    except Unsatisfiable:
        headers["Content-Range"] = f"bytes */{held.length}"
        return web.Response(status=416, headers=headers)
    start, count, status = 0, held.length, 200
    if wanted is not None:
        start, count, status = wanted.start, wanted.length, 206
        headers["Content-Range"] = f"bytes {wanted.start}-{wanted.end}/{held.length}"
    fd = -1
    if held.data is None and request.method != "HEAD":
        assert held.file is not None
        try:
            fd = os.open(held.file, os.O_RDONLY)
        except OSError:
            raise NotServed(request.match_info.get("path", "")) from None
    try:
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = count
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        service = request.app[_SERVICE]
        try:
            if held.data is not None:
                await response.write(held.data[start : start + count])
            else:
                sent = 0
                while sent < count:
                    # Page-cache reads of 256 KiB take microseconds: cheaper in the loop than
                    # a round trip through the worker pool for every chunk.
                    chunk = os.pread(fd, min(CHUNK, count - sent), start + sent)
                    if not chunk:
                        raise ConnectionResetError("the file ended early")
                    await response.write(chunk)
                    sent += len(chunk)
                    service.metrics.inc("response_bytes_total", len(chunk))
            await response.write_eof()
        except ConnectionError:
            # The client went away mid-body: nothing to answer, nothing to log as an error.
            pass
        return response
    finally:
        if fd >= 0:
            os.close(fd)


def _unavailable(e: SteppatchError, retry_after: int) -> web.Response:
    return web.json_response(
        {"error": str(e)}, status=503, headers={"Retry-After": str(max(retry_after, 1))}
    )


async def handle_get(request: web.Request) -> web.StreamResponse:
    """Any repository path: 200/206/304/404/416/503."""
    service = request.app[_SERVICE]
    path = request.match_info["path"]
    retry = int(service.config.upstream_retry_s) or 1
    if path.partition("/")[0] == "snapshots":
        # Reached only with an encoded slash ("snapshots%2Fbob%2Flatest.spr"): the snapshot
        # area is the snapshot route's alone, with its owner check, never a plain file.
        return web.json_response({"error": f"{path}: not found"}, status=404)
    try:
        held = await service.locate(path)
        with service.sending(held):
            return await send(request, held)
    except NotServed:
        return web.json_response({"error": f"{path}: not found"}, status=404)
    except UpstreamUnavailable as e:
        return _unavailable(e, e.retry_after)
    except StoreError as e:
        return _unavailable(e, retry)
    except LockedError as e:
        return _unavailable(e, 1)
    except SteppatchError as e:
        # Bad bytes from every upstream, a manifest that is not one: nothing we can send.
        return _unavailable(e, retry)


async def handle_snapshot(request: web.Request) -> web.StreamResponse:
    """``PUT``/``GET /snapshots/PATH``: 201/200, 400/403/404/413, 429 with ``Retry-After``
    (too many uploads), 507 on a full disk."""
    service = request.app[_SERVICE]
    path = request.match_info["path"]
    owner = _client_system(request)
    store = service.snapshots
    try:
        if request.method == "PUT":
            if not service.config.accept_snapshots:
                raise SnapshotRefused(403, "this server does not accept snapshots")
            limit = store.limits.max_snapshot_bytes
            if (request.content_length or 0) > limit:
                raise SnapshotRefused(413, f"larger than {limit} bytes")
            body = bytearray()
            # read() may return less than asked: read until the end or past the limit.
            while len(body) <= limit and (part := await request.content.read(limit + 1)):
                body += part
            if len(body) > limit:
                raise SnapshotRefused(413, f"larger than {limit} bytes")
            kept = await service.blocking(store.put, path, owner, bytes(body))
            service.metrics.inc("snapshots_stored_total")
            return web.json_response({"stored": kept}, status=201)
        data = await service.blocking(store.get, path, owner)
        return web.Response(body=data, content_type="application/json")
    except SnapshotRateLimited as e:
        return web.json_response(
            {"error": e.problem}, status=429, headers={"Retry-After": str(e.retry_after)}
        )
    except SnapshotRefused as e:
        answer = {"error": e.problem} if e.field is None else {"error": e.problem, "field": e.field}
        return web.json_response(answer, status=e.status)
    except StoreFull as e:
        return web.json_response({"error": str(e)}, status=507)
    except StoreError as e:
        return _unavailable(e, 30)


@web.middleware
async def _count(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.monotonic()
    status = 499  # the client went away before an answer
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    finally:
        service = request.app[_SERVICE]
        service.metrics.inc("requests_total", method=request.method, status=str(status))
        log = request.app[_LOG]
        if log is not None:
            log.write(json.dumps({
                "time": round(time.time(), 3),
                "method": request.method,
                "path": request.path,
                "status": status,
                "seconds": round(time.monotonic() - started, 4),
                "range": request.headers.get("Range"),
            }) + "\n")
            log.flush()


def service_app(service: Service, log: IO[str] | None = None) -> web.Application:
    """The service port's application."""
    app = web.Application(middlewares=[_count], client_max_size=8 * 1024 * 1024)
    app[_SERVICE] = service
    app[_LOG] = log
    app.router.add_route("PUT", "/snapshots/{path:.+}", handle_snapshot)
    app.router.add_get("/snapshots/{path:.+}", handle_snapshot)
    app.router.add_get("/{path:.+}", handle_get)
    return app


#: the admin routes anyone who can reach the port may ask (everything else needs the token)
_OPEN_ADMIN = frozenset({"/health"})
_REALM = 'realm="steppatch-admin"'


def _token_ok(header: str | None, token: str) -> bool:
    """``Authorization: Bearer TOKEN`` or HTTP Basic with any user and TOKEN as the password,
    compared in constant time."""
    scheme, _, value = (header or "").partition(" ")
    given = ""
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        given = decoded.partition(":")[2]
    return hmac.compare_digest(given.encode(), token.encode())


def _admin_auth(
    token: str | None,
) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def auth(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if (
            token is not None
            and request.path not in _OPEN_ADMIN
            and not _token_ok(request.headers.get("Authorization"), token)
        ):
            response = web.json_response(
                {"error": "the admin token is missing or wrong"}, status=401
            )
            response.headers.add("WWW-Authenticate", f"Bearer {_REALM}")
            response.headers.add("WWW-Authenticate", f"Basic {_REALM}")
            return response
        return await handler(request)

    return auth


def admin_app(service: Service) -> web.Application:
    """The admin port: ``/health`` (JSON), ``/metrics`` (Prometheus text), ``POST /sync``,
    ``POST /gc`` (``{"dry_run": bool}``: a collection of the store now, what it freed), and the
    fleet pages (``/``, ``/systems/NAME``, ``/store``: :mod:`._pages`).

    With ``admin_token`` set, every route but ``/health`` needs it. ``POST /sync`` takes a JSON
    object (``Content-Type: application/json``), which an HTML form cannot send, and a page of
    another origin cannot send without a CORS preflight, which this port does not answer.
    """

    async def health(request: web.Request) -> web.Response:
        return web.json_response(service.health())

    async def metrics(request: web.Request) -> web.Response:
        service.health()  # updates the "healthy" gauge
        fleet, _unreadable = await service.blocking(service.fleet.fleet)
        fleet_metrics(service, fleet)
        return web.Response(
            text=service.metrics.render(),
            content_type="text/plain",
            headers={"X-Content-Type-Options": "nosniff"},
            charset="utf-8",
        )

    async def collect(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return web.json_response(
                {"error": "POST /gc takes a JSON object (Content-Type: application/json)"},
                status=415,
            )
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("dry_run", False), bool):
            return web.json_response(
                {"error": 'POST /gc takes a JSON object: {"dry_run": true|false}'}, status=400
            )
        return web.json_response(await service.collect(dry_run=body.get("dry_run", False)))

    async def sync(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return web.json_response(
                {"error": "POST /sync takes a JSON object (Content-Type: application/json)"},
                status=415,
            )
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.json_response({"error": "POST /sync takes a JSON object"}, status=400)
        return web.json_response(await service.sync_now())

    app = web.Application(
        middlewares=[_admin_auth(service.config.admin_token)], client_max_size=64 * 1024
    )
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/sync", sync)
    add_pages(app, service)
    app.router.add_post("/gc", collect)
    return app


@contextlib.contextmanager
def _store_lock(store: Path) -> Any:
    store.mkdir(parents=True, exist_ok=True)
    fd = os.open(store / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LockedError(str(store / ".lock")) from None
        yield
    finally:
        os.close(fd)


def serve(config: MirrorConfig, ready: Callable[[dict[str, str]], None] | None = None) -> None:
    """Run the server until SIGTERM or SIGINT, then stop gracefully.

    ``ready`` is called with the bound addresses once both ports listen. Raises
    :class:`MirrorConfigError` (TLS files, the trusted root; :class:`PrivateKeyServed` before
    anything is created or bound), :class:`StoreError`, :class:`LockedError` (another server
    uses this store), ``OSError`` (a port in use).
    """
    check_no_private_keys(config)
    try:
        with _store_lock(config.store):
            asyncio.run(_serve(config, ready))
    except OSError as e:
        if e.errno is None:
            raise
        raise StoreError(str(config.store), e.strerror or str(e)) from e


async def _serve(config: MirrorConfig, ready: Callable[[dict[str, str]], None] | None) -> None:
    loop = asyncio.get_running_loop()
    executor = concurrent.futures.ThreadPoolExecutor(
        config.workers, thread_name_prefix="steppatch-server"
    )
    loop.set_default_executor(executor)
    tls = TlsReloader(config.tls, config.source)
    metrics = Metrics()
    service = await loop.run_in_executor(executor, make_service, config, metrics, executor)
    log: IO[str] | None = None
    if config.access_log is not None:
        log = open(config.access_log, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    runner = web.AppRunner(
        service_app(service, log), access_log=None, shutdown_timeout=config.shutdown_timeout_s
    )
    admin = web.AppRunner(admin_app(service), access_log=None, shutdown_timeout=1.0)
    stop = asyncio.Event()
    watch: asyncio.Task[None] | None = None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()
        await admin.setup()
        await web.TCPSite(
            runner, config.listen.host, config.listen.port, ssl_context=tls.base, backlog=1024
        ).start()
        await web.TCPSite(admin, config.admin_listen.host, config.admin_listen.port).start()
        service.start()
        if config.tls.crl is not None:
            watch = asyncio.create_task(tls.watch())
        addresses = {
            "listen": _address(runner.addresses[0]),
            "admin_listen": _address(admin.addresses[0]),
        }
        if ready is not None:
            ready(addresses)
        await stop.wait()
    finally:
        if watch is not None:
            watch.cancel()
        # New connections are refused at once; requests under way get shutdown_timeout_s.
        await service.close()
        await runner.cleanup()
        await admin.cleanup()
        executor.shutdown(wait=True, cancel_futures=True)
        if log is not None:
            log.close()


def _address(addr: Any) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def print_ready(addresses: dict[str, str]) -> None:
    """The line a supervisor (or a test) waits for."""
    sys.stdout.write(json.dumps({"event": "ready", **addresses}) + "\n")
    sys.stdout.flush()
