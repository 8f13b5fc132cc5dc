"""A fleet on a real origin over HTTPS: three systems at different versions upload their
snapshots (one of them a cluster of two homes, applied as one), and one system that went silent
in November."""

from __future__ import annotations

import datetime as dt
import html.parser
import json
from pathlib import Path

import attrs
from packaging.version import Version

from steppatch import Home, Repository, pki
from steppatch.cluster import Cluster
from steppatch.config import NodeEntry
from steppatch.model import RecipeKind
from steppatch.recipe import dump_recipe, pinned_recipe
from tests.builders import component, repository
from tests.integration.server.conftest import Pki, Server, Servers, https_home, wait_for

TOKEN = "fleet-token-0123456789abcdef"
HOSTILE = "<script>alert('fleet')</script> & <b>not bold</b>"


def make_certs(d: Path) -> Pki:
    """A private CA, the server's certificate and clients prod-eu, test-eu, cluster-eu and
    your-mirror."""
    ca = pki.make_ca()
    (d / "ca.crt").write_bytes(ca.cert_pem)

    def write(name: str, kc: pki.KeyAndCert) -> tuple[Path, Path]:
        cert, key = d / f"{name}.crt", d / f"{name}.key"
        cert.write_bytes(kc.cert_pem)
        key.write_bytes(kc.key_pem)
        key.chmod(0o600)
        return cert, key

    server_cert, server_key = write("server", pki.issue_server_cert(ca, ["127.0.0.1"]))
    for name in ("prod-eu", "test-eu", "cluster-eu", "your-mirror"):
        write(name, pki.issue_client_cert(ca, name))
    return Pki(d, d / "ca.crt", server_cert, server_key)


def fleet_repo(root: Path) -> Repository:
    src = root / "src"
    repo = repository(
        root,
        component(src, "lib", "1.0", {"lib/l.txt": b"lib one"}),
        component(src, "lib", "1.1", {"lib/l.txt": b"lib one one"}),
        component(src, "app", "1.0", {"app/a.txt": b"app one"}, deps={"lib": "==1.0"}),
        component(src, "app", "1.0.1", {"app/a.txt": b"app one one"}, deps={"lib": "==1.0"},
                  hot=True, extra_toml=f"notes = {json.dumps(HOSTILE)}\n"),
        component(src, "app", "2.0", {"app/a.txt": b"app two"}, deps={"lib": "==1.1"}),
    )
    repo.release("releases/2026.12.spr", {"app": Version("2.0"), "lib": Version("1.1")})
    return repo


@attrs.frozen
class FleetServer:
    server: Server
    store: Path
    repo: Repository


def build_fleet(tmp: Path, servers: Servers, certs: Pki) -> FleetServer:
    repo = fleet_repo(tmp / "r")
    origin = servers.origin(repo.root, admin_token=TOKEN)
    store = origin.config.parent / "store"
    prod = https_home(tmp / "prod", origin, repo, certs, "prod-eu")
    assert prod.apply(["to:app/1.0/app-1.0.spr"]).upload == "sent"
    test = https_home(tmp / "test", origin, repo, certs, "test-eu")
    assert test.apply(["to:app/1.0/app-1.0.spr"]).upload == "sent"
    assert test.apply(["to:app/2.0/app-2.0.spr"]).upload == "sent"
    # A cluster of two homes (node-a lists node-b): one cluster apply stages both, switches
    # both, and sends the cluster snapshot with its nodes.
    cert, key = certs.client("cluster-eu")
    pem = (cert.read_bytes(), key.read_bytes())
    root = (repo.root / "root.json").read_bytes()
    node_a = Home.init(tmp / "node-a", updates=origin.url, root=root, system="cluster-eu",
                       ca=certs.ca.read_bytes(), client_cert=pem)
    Home.init(tmp / "node-b", updates=origin.url, root=root, ca=certs.ca.read_bytes(),
              client_cert=pem)
    node_a.name_node("node-a")
    node_a.add_node(NodeEntry("node-b", str(tmp / "node-b")))
    report = Cluster(Home.open(tmp / "node-a")).apply(["to:app/1.0/app-1.0.spr"])
    assert [o.switched for o in report.nodes] == [True, True]
    assert report.upload == "sent"
    wait_for(lambda: len(list((store / "snapshots/cluster-eu").glob("2*.spr"))) == 2)
    # A system silent since November: its upload as the server stored it then.
    old = store / "snapshots/old-eu"
    old.mkdir(parents=True)
    body = dump_recipe(pinned_recipe(RecipeKind.SNAPSHOT, {"app": Version("2.0"),
                                                           "lib": Version("1.1")},
                                     system="old-eu"))
    (old / "20261101T080000.000000Z-0badcafe.spr").write_bytes(body)
    (old / "latest.spr").write_bytes(body)
    return FleetServer(origin, store, repo)


NOW = dt.datetime.now(dt.UTC)


class Tables(html.parser.HTMLParser):
    """Every table of a page by id: its body rows, each a list of cell texts; and all text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.text: list[str] = []
        self.scripts = 0
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs_: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        if tag == "table":
            self._table = dict(attrs_).get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse_page(text: str) -> Tables:
    t = Tables()
    t.feed(text)
    return t
