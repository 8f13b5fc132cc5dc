"""The admin port: ``POST /sync`` only as JSON (no HTML form can trigger it), and ``admin_token``
required for every route but ``/health`` when set."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from steppatch import Repository
from steppatch.server import load_config, sync_once
from tests.integration.server.conftest import Pki, Server, Servers, free_port, wait_for

TOKEN = "s3cret-admin-token-0123"


def ask(
    server: Server, path: str, method: str = "GET", body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (the last value of each) and body, error statuses included."""
    request = urllib.request.Request(
        f"http://{server.admin_listen}{path}", body, headers or {}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def refreshes(server: Server, token: str | None = None) -> float:
    text = server.admin("/metrics", token=token)
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith("steppatch_server_metadata_refreshes_total")
    )


@pytest.fixture
def mirror(repo: Repository, servers: Servers, certs: Pki) -> Server:
    origin = servers.origin(repo.root)
    m = servers.mirror([origin], repo.root / "root.json", poll_interval_s=3600)
    wait_for(lambda: refreshes(m) >= 1)  # the refresh at start is done
    return m


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"go=1", "application/x-www-form-urlencoded"),
        (b"--b\r\nContent-Disposition: form-data; name=go\r\n\r\n1\r\n--b--\r\n",
         "multipart/form-data; boundary=b"),
        (b"{}", "text/plain"),
        (b"{}", None),
    ],
)
def test_a_form_cannot_trigger_a_sync(mirror: Server, body: bytes, content_type: str | None
                                      ) -> None:
    before = refreshes(mirror)
    headers = {"Content-Type": content_type} if content_type else {}
    status, _headers, answer = ask(mirror, "/sync", "POST", body, headers)
    assert status == 415
    assert "application/json" in json.loads(answer)["error"]
    assert refreshes(mirror) == before  # no sync started
    # As JSON it is taken, and the refresh runs.
    status, _headers, answer = ask(mirror, "/sync", "POST", b"{}",
                                   {"Content-Type": "application/json"})
    assert status == 200 and json.loads(answer)["synced"] is True
    assert refreshes(mirror) == before + 1


@pytest.mark.parametrize("body", [b"", b"[]", b"{", b'"sync"'])
def test_sync_takes_a_json_object(mirror: Server, body: bytes) -> None:
    before = refreshes(mirror)
    status, _h, _b = ask(mirror, "/sync", "POST", body, {"Content-Type": "application/json"})
    assert status == 400
    assert refreshes(mirror) == before


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def guarded(repo: Repository, servers: Servers) -> Server:
    return servers.origin(repo.root, admin_token=TOKEN)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-token-wrong-token",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Bearer ",
        _basic("admin", "wrong-token-wrong-token"),
        _basic(TOKEN, ""),  # the token as the user name is not the password
        "Basic !!!not-base64",
        f"Token {TOKEN}",
        TOKEN,
    ],
)
@pytest.mark.parametrize(("path", "method"), [("/metrics", "GET"), ("/sync", "POST")])
def test_a_missing_or_wrong_token_is_401(
    guarded: Server, authorization: str | None, path: str, method: str
) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    status, answer_headers, _body = ask(guarded, path, method, b"{}" if method == "POST" else None,
                                        headers)
    assert status == 401
    assert "realm=" in answer_headers["WWW-Authenticate"]


def test_the_right_token_opens_every_route_and_health_is_open(guarded: Server) -> None:
    status, _h, body = ask(guarded, "/health")  # open: monitoring needs no secret
    assert status == 200 and json.loads(body)["status"] == "ok"
    for authorization in (f"Bearer {TOKEN}", _basic("anyone", TOKEN), _basic("", TOKEN)):
        status, _h, body = ask(guarded, "/metrics", headers={"Authorization": authorization})
        assert status == 200 and b"steppatch_server_requests_total" in body
        status, _h, body = ask(guarded, "/sync", "POST", b"{}", {
            "Authorization": authorization, "Content-Type": "application/json",
        })
        assert status == 200 and json.loads(body)["synced"] is False  # an origin


def test_the_cli_code_sends_the_token_from_the_config(
    repo: Repository, servers: Servers, certs: Pki
) -> None:
    origin = servers.origin(repo.root)
    # A fixed port: the config is all the CLI knows of the server.
    m = servers.mirror([origin], repo.root / "root.json", poll_interval_s=3600,
                       admin_token=TOKEN, admin_listen=f"127.0.0.1:{free_port()}")
    wait_for(lambda: refreshes(m, TOKEN) >= 1)
    before = refreshes(m, TOKEN)
    # The server holds the store, so sync_once ('mirror sync --once') asks it on the admin port.
    result: dict[str, Any] = sync_once(load_config(m.config))
    assert result["via"] == "running server" and result["synced"] is True
    assert refreshes(m, TOKEN) == before + 1
