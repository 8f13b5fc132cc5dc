"""Snapshot uploads that crashed the JSON reader (issue 14, item 6) get a 400, never a 500.

Before, an upload nested 100,000 levels deep raised RecursionError and one holding an integer of
5,000 digits a ValueError inside the handler: a 500 with a traceback. Each is now refused like
any other upload that is not a thin snapshot, nothing is stored, and the server keeps serving.
"""

from __future__ import annotations

import json

import pytest

from steppatch import Repository
from tests.integration.server.conftest import Pki, Servers, client
from tests.integration.server.test_snapshots import snapshot

DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "9" * 5000
GOOD = json.loads(snapshot("prod-eu"))


def _with(field: str, raw: str) -> bytes:
    """The good snapshot with ``field`` set to ``raw`` JSON text (which json.dumps cannot make)."""
    return json.dumps({**GOOD, field: "@RAW@"}).replace('"@RAW@"', raw).encode()


BOMBS = {
    "deep document": DEEP.encode(),
    "deep value": _with("created", DEEP),
    "huge integer": _with("created", HUGE),
    "huge negative integer": _with("created", "-" + HUGE),
    "list for a string": _with("system", '["prod-eu"]'),
    "object for a component": _with("components", '{"restapi": {"==": "7.0.40"}}'),
    "NaN": _with("created", "NaN"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_upload_that_crashed_the_reader_is_a_400(
    name: str, repo: Repository, servers: Servers, certs: Pki
) -> None:
    origin = servers.origin(repo.root)
    s = client(certs, "prod-eu")
    url = f"{origin.url}/snapshots/prod-eu.spr"
    r = s.put(url, data=BOMBS[name])
    assert r.status_code == 400, r.text
    assert "Traceback" not in r.text and r.json()["error"]
    store = origin.config.parent / "store/snapshots"
    assert not (store / "prod-eu").exists()  # nothing stored
    # The server is unharmed: the next, good upload is stored.
    assert s.put(url, data=snapshot("prod-eu")).status_code == 201
    assert (store / "prod-eu/latest.spr").read_bytes() == snapshot("prod-eu")
    assert origin.metric("snapshots_stored_total") == 1  # the good one only
