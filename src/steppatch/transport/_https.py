from __future__ import annotations

import contextlib
import datetime as dt
import errno
import heapq
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import requests.adapters
import urllib3.exceptions

from steppatch import _record as record
from steppatch import pki
from steppatch.errors import ConfigError, MissingFile, NetworkError
from steppatch.paths import safe_relpath
from steppatch.transport._limits import DEFAULT_TRANSPORT_LIMITS, TransportLimits
from steppatch.transport.errors import (
    ConnectionFailed,
    HttpStatusError,
    TimedOut,
    TlsError,
    TlsProblem,
)

__all__ = ["HttpsFetcher", "TlsConfig", "TlsIdentity", "classify", "make_ssl_context"]

# ECDHE key exchange with AEAD ciphers only, for TLS 1.2 (TLS 1.3 suites are all of this kind).
_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1"

# What nginx answers (HTTP 400) when it requires a client certificate and the handshake gave it
# none or one it refuses; nginx checks the certificate after the handshake, so this is an answer,
# not a TLS alert.
_NGINX_NO_CERT = b"No required SSL certificate was sent"
_NGINX_BAD_CERT = b"The SSL certificate error"

# Alerts a server sends when it refuses the client's certificate.
_REJECTED_ALERTS = (
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    "TLSV1_ALERT_ACCESS_DENIED",
    "TLSV1_ALERT_DECRYPT_ERROR",
)
_REQUIRED_ALERT = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
# OpenSSL's X509_V_ERR_* codes for a server certificate the client refuses
_X509_NOT_YET_VALID = 9
_X509_EXPIRED = 10
_X509_HOSTNAME_MISMATCH = 62
_X509_IP_MISMATCH = 64


@record.frozen
class TlsConfig:
    """The private CA a home trusts for its mirrors, and its client certificate (both or none)."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError(
                str(self.cert_file or self.key_file),
                "a client certificate needs both the certificate and its key",
            )


@record.frozen
class TlsIdentity:
    """Who answered a TLS handshake: its verified certificate and the connection's parameters."""

    host: str
    port: int
    tls_version: str
    cipher: str
    certificate: pki.CertificateInfo


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(str(path), f"cannot read the {what}: {e.strerror or e}") from e


def make_ssl_context(tls: TlsConfig, now: dt.datetime | None = None) -> ssl.SSLContext:
    """A client context pinned to ``tls.ca_file`` (no system CAs), TLS 1.2+, with the client cert.

    The client certificate is checked first, so that a mistake shows as what it is rather than as
    a refused handshake: raises :class:`~steppatch.pki.CertificateError` for an unreadable CA, a
    key that does not match, a client certificate that is expired or not yet valid;
    :class:`ConfigError` for a missing file.
    """
    ca_pem = _read(tls.ca_file, "CA certificate")
    ca_info = pki.read_certificate(ca_pem, str(tls.ca_file))
    if ca_info.usage != "ca":
        raise pki.CertificateError(str(tls.ca_file), "not a CA certificate")
    # Given CA data, create_default_context loads no system CAs.
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem.decode("ascii"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_CIPHERS)
    if tls.cert_file is not None and tls.key_file is not None:
        cert_pem = _read(tls.cert_file, "client certificate")
        key_pem = _read(tls.key_file, "client key")
        pki.check_key_matches(cert_pem, key_pem, str(tls.cert_file))
        info = pki.read_certificate(cert_pem, str(tls.cert_file))
        moment = now or dt.datetime.now(dt.UTC)
        if info.expired(moment):
            when = "expired on" if moment > info.not_after else "is valid only from"
            date = info.not_after if moment > info.not_after else info.not_before
            raise pki.CertificateError(
                str(tls.cert_file),
                f"the client certificate {when} {date:%Y-%m-%d %H:%M} UTC "
                "(renew it: 'steppatch enroll')",
            )
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
        except ssl.SSLError as e:
            raise pki.CertificateError(str(tls.cert_file), f"unusable: {e}") from e
    return ctx


class _PinnedAdapter(requests.adapters.HTTPAdapter):
    """Uses one prepared SSL context for every connection.

    requests would otherwise hand the CA and the client certificate paths to urllib3 for every
    new connection, which loads them into the shared context again and again, from several
    threads at once; and a ``verify=True`` anywhere would load the system's CAs into it. The
    paths are still passed to requests (``verify=``, ``cert=``) so that no environment variable
    can stand in for them; this adapter checks they are ours and drops them.
    """

    def __init__(self, ctx: ssl.SSLContext, tls: TlsConfig, pool_size: int) -> None:
        self._ctx = ctx
        self._verify = str(tls.ca_file)
        self._cert = (
            None if tls.cert_file is None else (str(tls.cert_file), str(tls.key_file))
        )
        super().__init__(pool_connections=4, pool_maxsize=pool_size, max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["ssl_context"] = self._ctx
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def _check(self, verify: object, cert: object) -> None:
        if verify != self._verify or (cert or None) != self._cert:
            raise ValueError("this adapter serves only its own CA and client certificate")

    def build_connection_pool_key_attributes(
        self,
        request: requests.PreparedRequest,
        verify: bool | str,
        cert: str | tuple[str, str] | None = None,
    ) -> Any:
        self._check(verify, cert)
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        pool_kwargs.pop("ca_certs", None)
        pool_kwargs.pop("ca_cert_dir", None)
        pool_kwargs.pop("cert_file", None)
        pool_kwargs.pop("key_file", None)
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        self._check(verify, cert)
        conn.cert_reqs = "CERT_REQUIRED"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, urllib3's ``reason``, and ``args``."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for inner in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args):
            if isinstance(inner, BaseException):
                todo.append(inner)


def _tls_error(url: str, e: ssl.SSLError, has_cert: bool) -> TlsError:
    if isinstance(e, ssl.SSLCertVerificationError):
        code = e.verify_code
        detail = e.verify_message or str(e)
        if code in (_X509_HOSTNAME_MISMATCH, _X509_IP_MISMATCH):
            return TlsError(url, TlsProblem.SERVER_HOSTNAME, detail)
        if code in (_X509_EXPIRED, _X509_NOT_YET_VALID):
            return TlsError(url, TlsProblem.SERVER_EXPIRED, detail)
        return TlsError(url, TlsProblem.SERVER_UNTRUSTED, detail)
    reason = e.reason or ""
    detail = reason.lower().replace("_", " ") if reason else str(e)
    if reason == _REQUIRED_ALERT or (reason in _REJECTED_ALERTS and not has_cert):
        kind = TlsProblem.CLIENT_CERT_REJECTED if has_cert else TlsProblem.CLIENT_CERT_MISSING
        return TlsError(url, kind, detail)
    if reason in _REJECTED_ALERTS:
        return TlsError(url, TlsProblem.CLIENT_CERT_REJECTED, detail)
    if isinstance(e, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return _closed_after_handshake(url, has_cert, detail)
    return TlsError(url, TlsProblem.HANDSHAKE, detail)


def _closed_after_handshake(url: str, has_cert: bool, detail: str) -> TlsError:
    # TLS 1.3 finishes the client's side of the handshake before the server has looked at the
    # client certificate; a server that refuses it may just close. Say what probably happened.
    kind = TlsProblem.CLIENT_CERT_REJECTED if has_cert else TlsProblem.CLIENT_CERT_MISSING
    return TlsError(url, kind, detail, probable=True)


def classify(
    url: str, exc: BaseException, has_cert: bool, limits: TransportLimits
) -> NetworkError:
    """Our error for an exception of requests, urllib3, ``ssl`` or the socket layer."""
    causes = list(_causes(exc))
    for e in causes:
        if isinstance(e, ssl.SSLError):
            return _tls_error(url, e, has_cert)
    for e in causes:
        if isinstance(e, ConnectionRefusedError):
            return ConnectionFailed(url, "refused")
        if isinstance(e, urllib3.exceptions.NameResolutionError | socket.gaierror):
            return ConnectionFailed(url, "the host name does not resolve")
    for e in causes:
        # urllib3's NewConnectionError is a ConnectTimeoutError too: only a real timeout counts
        if isinstance(e, requests.ConnectTimeout) or (
            isinstance(e, urllib3.exceptions.ConnectTimeoutError)
            and not isinstance(e, urllib3.exceptions.NewConnectionError)
        ):
            return TimedOut(url, "connect", limits.connect_timeout_seconds)
        if isinstance(e, requests.ReadTimeout | urllib3.exceptions.ReadTimeoutError | TimeoutError):
            return TimedOut(url, "read", limits.read_timeout_seconds)
    for e in causes:
        if isinstance(e, http.client.RemoteDisconnected | ConnectionResetError):
            return _closed_after_handshake(url, has_cert, "connection closed before an answer")
    for e in causes:
        if isinstance(e, OSError) and e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return ConnectionFailed(url, e.strerror or "unreachable")
    return ConnectionFailed(url, str(exc) or type(exc).__name__)


class _Ticket:
    __slots__ = ("deadline", "fired", "sock")

    def __init__(self, deadline: float, sock: socket.socket) -> None:
        self.deadline = deadline
        self.sock: socket.socket | None = sock
        self.fired = False


class _Watchdog:
    """One thread that ends downloads past their deadline by shutting their socket down.

    A blocked ``recv`` returns at once when its socket is shut down; the reader then sees the
    end of the stream and the ticket says why. Costs a lock and a heap push per download.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Ticket]] = []
        self._count = 0
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float, sock: socket.socket) -> _Ticket:
        ticket = _Ticket(deadline, sock)
        with self._cond:
            self._count += 1
            heapq.heappush(self._heap, (deadline, self._count, ticket))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="steppatch-deadlines", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return ticket

    def unwatch(self, ticket: _Ticket) -> None:
        with self._cond:
            # the entry stays in the heap; a ticket without a socket is skipped when it is due
            ticket.sock = None

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].sock is None:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, _n, ticket = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                sock = ticket.sock
                if sock is None:
                    continue
                ticket.fired = True
                # the plain socket's shutdown: the TLS object is left to its reader
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


_WATCHDOG = _Watchdog()


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The socket a streamed response is read from, if it can be found."""
    conn = response.raw.connection
    sock = getattr(conn, "sock", None)
    if sock is None:
        # With "Connection: close" http.client hands the socket over to the response.
        fp = getattr(getattr(response.raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


class HttpsFetcher:
    """Reads a repository over HTTPS with a client certificate, pinned to a private CA.

    Thread-safe: each thread has its own ``requests.Session`` over one shared connection pool
    (``limits.parallel_downloads`` connections). No redirect is followed (a mirror names its
    own files; a redirect could lead to plain HTTP). Bodies are requested without content
    coding, so the bytes received are the bytes the hashes are about.
    """

    def __init__(
        self,
        base_url: str,
        tls: TlsConfig,
        limits: TransportLimits = DEFAULT_TRANSPORT_LIMITS,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(base_url, "expected an https://HOST[:PORT][/PATH] URL")
        if parts.query or parts.fragment or parts.username:
            raise ConfigError(base_url, "a mirror URL has no query, fragment or user name")
        self._url = base_url.rstrip("/")
        self.tls = tls
        self.limits = limits
        self._ctx = make_ssl_context(tls)
        self._adapter = _PinnedAdapter(self._ctx, tls, max(limits.parallel_downloads, 1))
        self._verify = str(tls.ca_file)
        self._cert = None if tls.cert_file is None else (str(tls.cert_file), str(tls.key_file))
        self._local = threading.local()

    @property
    def url(self) -> str:
        return self._url

    @property
    def has_client_cert(self) -> bool:
        return self._cert is not None

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # No proxies, .netrc or REQUESTS_CA_BUNDLE from the environment.
            session.trust_env = False
            session.mount("https://", self._adapter)
            session.headers["Accept-Encoding"] = "identity"
            session.headers["User-Agent"] = "steppatch"
            self._local.session = session
        return session

    def close(self) -> None:
        """Close every connection (the sessions share the adapter's pool)."""
        self._adapter.close()
        self._local = threading.local()

    def fetch(self, path: str, offset: int = 0) -> Iterator[bytes]:
        """Yield the file's bytes from ``offset`` on (an HTTP Range request when not 0).

        Raises :class:`MissingFile` on 404; :class:`TlsError`, :class:`ConnectionFailed`,
        :class:`TimedOut` (connect, read, or the overall deadline) and :class:`HttpStatusError`
        (any other error status, and a Range answer that starts elsewhere).
        """
        url = f"{self._url}/{quote(safe_relpath(path))}"
        limits = self.limits
        started = time.monotonic()
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        session = self._session()
        # Prepared here rather than by session.get(): no cookies, auth or hooks to merge, which
        # is a good part of requests' cost per small object.
        request = requests.PreparedRequest()
        request.prepare(method="GET", url=url, headers={**session.headers, **headers})
        for attempt in (1, 2):
            try:
                response = session.send(
                    request,
                    stream=True,
                    timeout=(limits.connect_timeout_seconds, limits.read_timeout_seconds),
                    verify=self._verify,
                    cert=self._cert,
                    allow_redirects=False,
                )
                break
            except (requests.RequestException, OSError) as e:
                error = self._error(url, e)
                if attempt == 1 and isinstance(error, TlsError) and error.probable:
                    # Closed before an answer: also what a kept-alive connection the server
                    # has just dropped looks like. Once more, on a new connection.
                    continue
                raise error from e
        try:
            skip = self._check_status(url, response, offset)
            yield from self._body(url, response, skip, started)
        finally:
            response.close()

    def put(self, path: str, data: bytes) -> int:
        """Send ``data`` to ``path`` (a snapshot upload); return the HTTP status.

        The answer's body is not read (only its status matters), so a server cannot make us
        read without end. Raises :class:`TlsError`, :class:`ConnectionFailed` or
        :class:`TimedOut`.
        """
        url = f"{self._url}/{quote(safe_relpath(path))}"
        try:
            response = self._session().put(
                url,
                data=data,
                stream=True,
                timeout=(self.limits.connect_timeout_seconds, self.limits.read_timeout_seconds),
                verify=self._verify,
                cert=self._cert,
                allow_redirects=False,
            )
        except (requests.RequestException, OSError) as e:
            raise self._error(url, e) from e
        response.close()
        return response.status_code

    def _error(self, url: str, e: BaseException) -> NetworkError:
        return classify(url, e, self.has_client_cert, self.limits)

    def _check_status(self, url: str, response: requests.Response, offset: int) -> int:
        status = response.status_code
        if status == 404:
            raise MissingFile(url)
        if status == 206 and offset:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise HttpStatusError(
                    url, status, f"answered a Range from {offset} with {content_range!r}"
                )
            return 0
        if status == 200:
            # A server that ignores Range sends it all: skip what is held already.
            return offset
        if status in (400, 495, 496):
            body = self._error_body(response)
            if status == 496 or _NGINX_NO_CERT in body:
                kind = (
                    TlsProblem.CLIENT_CERT_REJECTED
                    if self.has_client_cert
                    else TlsProblem.CLIENT_CERT_MISSING
                )
                raise TlsError(url, kind, f"HTTP {status}: {_NGINX_NO_CERT.decode()}")
            if status == 495 or _NGINX_BAD_CERT in body:
                detail = f"HTTP {status}: {_NGINX_BAD_CERT.decode()}"
                raise TlsError(url, TlsProblem.CLIENT_CERT_REJECTED, detail)
        raise HttpStatusError(url, status, response.reason or "")

    def _error_body(self, response: requests.Response) -> bytes:
        try:
            return response.raw.read(self.limits.max_error_body_bytes) or b""
        except (urllib3.exceptions.HTTPError, OSError):
            return b""

    def _body(
        self, url: str, response: requests.Response, skip: int, started: float
    ) -> Iterator[bytes]:
        limits = self.limits
        raw = response.raw
        length_header = response.headers.get("Content-Length")
        expected = int(length_header) if length_header and length_header.isdigit() else None
        allowed = limits.deadline_for(expected)
        sock = _socket_of(response)
        # read(n) fills whole chunks (few Python calls per chunk: as fast as curl); a mirror that
        # trickles could hold it for long, so the deadline is kept by a watchdog that shuts the
        # socket down, which ends the read. Without the socket, read1 returns what one receive
        # brings, so the deadline is checked at least once per read timeout.
        ticket = _WATCHDOG.watch(started + allowed, sock) if sock is not None else None
        read = raw.read if ticket is not None else raw.read1
        received = 0
        try:
            while True:
                if time.monotonic() > started + allowed:
                    raise TimedOut(url, "deadline", round(allowed, 3))
                try:
                    chunk = read(limits.chunk_bytes)
                except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as e:
                    if ticket is not None and ticket.fired:
                        raise TimedOut(url, "deadline", round(allowed, 3)) from e
                    error = self._error(url, e)
                    if isinstance(error, TlsError) and error.probable:
                        # mid-body, a closed connection is just that
                        error = ConnectionFailed(url, f"broke off after {received} bytes")
                    elif isinstance(error, ConnectionFailed):
                        cause = f"broke off after {received} bytes ({error.cause})"
                        error = ConnectionFailed(url, cause)
                    raise error from e
                if not chunk:
                    break
                received += len(chunk)
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk = chunk[skip:]
                    skip = 0
                yield chunk
        finally:
            if ticket is not None:
                _WATCHDOG.unwatch(ticket)
        if ticket is not None and ticket.fired and expected is not None and received < expected:
            raise TimedOut(url, "deadline", round(allowed, 3))
        if expected is not None and received < expected:
            raise ConnectionFailed(url, f"broke off after {received} of {expected} bytes")

    def probe(self) -> TlsIdentity:
        """Connect, complete a TLS handshake and return who answered (for ``steppatch ping``).

        Raises what :meth:`fetch` raises for connecting. A server that checks client
        certificates only after the handshake (nginx) accepts the handshake here.
        """
        parts = urlsplit(self._url)
        host = parts.hostname or ""
        port = parts.port or 443
        try:
            with socket.create_connection(
                (host, port), timeout=self.limits.connect_timeout_seconds
            ) as sock:
                sock.settimeout(self.limits.read_timeout_seconds)
                with self._ctx.wrap_socket(sock, server_hostname=host) as tls:
                    der = tls.getpeercert(binary_form=True)
                    version = tls.version() or ""
                    cipher = (tls.cipher() or ("", "", 0))[0]
        except (OSError, ssl.SSLError) as e:
            raise self._error(self._url, e) from e
        assert der is not None  # a verified handshake always has a peer certificate
        info = pki.read_certificate(ssl.DER_cert_to_PEM_cert(der).encode(), f"{host}:{port}")
        return TlsIdentity(host, port, version, cipher, info)

