"""What an origin serves (the published layout only) and the private-key scan before it starts
(issue #14, item 1)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from steppatch import Repository
from steppatch.limits import Limits
from steppatch.server import PrivateKeyServed, parse_config
from steppatch.server._keyscan import check_no_private_keys, find_private_key
from steppatch.server._origin import PublishedRepository
from steppatch.trust import SigningKey
from tests.builders import component

KEY = SigningKey.generate().to_pem()
TLS = '[tls]\ncert = "s.crt"\nkey = "s.key"\nclient_ca = "ca.crt"\n'


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    repo = Repository.init(tmp_path / "repo")
    repo.add(component(tmp_path / "src", "restapi", "7.0.40", {"bin/run": b"run\n"}))
    return repo


def published_files(repo: Repository) -> list[str]:
    return sorted(
        str(p.relative_to(repo.root))
        for p in repo.root.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )


def test_everything_published_is_served_and_nothing_else(repo: Repository) -> None:
    view = PublishedRepository(repo.root)
    files = published_files(repo)
    assert {"root.json", "timestamp.json", "roots/1.root.json", "indexes/1.index.json"} <= set(
        files
    )
    assert any(f.startswith("objects/") for f in files)
    assert any(f.startswith("manifests/") for f in files)
    assert all(view.is_published(f) for f in files)
    # Keys moved in, a stray file, an object no manifest names, paths in no index.
    shutil.move(repo.key_dir, repo.root / "keys")
    (repo.root / "notes.txt").write_text("x")
    stray = b"not published"
    sha = hashlib.sha256(stray).hexdigest()
    (repo.root / "objects" / sha[:2]).mkdir(exist_ok=True)
    (repo.root / "objects" / sha[:2] / sha).write_bytes(stray)
    for path in (
        *(str(p.relative_to(repo.root)) for p in (repo.root / "keys").iterdir()),
        "notes.txt",
        f"objects/{sha[:2]}/{sha}",
        f"manifests/{sha[:2]}/{sha}.json",
        "restapi/7.0/restapi-7.0.41.spr",
        "roots/0.root.json",
        "indexes/x.index.json",
        "snapshots/bob/latest.spr",
    ):
        assert not view.is_published(path), path
    assert view.problem is None


def test_a_publish_is_seen_at_the_next_request(tmp_path: Path, repo: Repository) -> None:
    view = PublishedRepository(repo.root)
    new = "restapi/7.0/restapi-7.0.41.spr"
    assert not view.is_published(new)
    repo.add(component(tmp_path / "src2", "restapi", "7.0.41", {"bin/run": b"run 41\n"}))
    assert view.is_published(new)
    sha = hashlib.sha256(b"run 41\n").hexdigest()
    assert view.is_published(f"objects/{sha[:2]}/{sha}")


def test_a_tampered_manifest_names_no_objects(repo: Repository) -> None:
    cv = next(iter(repo.index.components["restapi"].values()))
    manifest = repo.root / cv.manifest.path
    sha = hashlib.sha256(b"run\n").hexdigest()
    manifest.chmod(0o644)
    manifest.write_bytes(manifest.read_bytes().replace(b"bin/run", b"bin/ran"))
    view = PublishedRepository(repo.root)
    assert view.is_published(cv.manifest.path)  # the path is published; clients check bytes
    assert not view.is_published(f"objects/{sha[:2]}/{sha}")


def test_metadata_that_does_not_verify_serves_no_content(repo: Repository) -> None:
    ts = repo.root / "timestamp.json"
    ts.write_bytes(ts.read_bytes().replace(b'"version"', b'"version" ', 1))
    data = ts.read_bytes()
    ts.write_bytes(data[: data.index(b'"signatures"')] + b'"signatures": []}')
    view = PublishedRepository(repo.root)
    assert view.is_published("timestamp.json")
    assert not view.is_published("restapi/7.0/restapi-7.0.40.spr")
    assert view.problem is not None and "does not verify" in view.problem


@pytest.mark.parametrize(
    "pem",
    [
        KEY,
        b"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n",
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n",
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n",
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" * 3 + KEY,
    ],
)
def test_scan_finds_a_private_key(tmp_path: Path, pem: bytes) -> None:
    (tmp_path / "tree" / "a" / "keys").mkdir(parents=True)
    (tmp_path / "tree" / "a" / "keys" / "k.pem").write_bytes(pem)
    assert find_private_key(tmp_path / "tree") == tmp_path / "tree" / "a" / "keys" / "k.pem"


def test_scan_passes_public_material_and_skips_what_it_must(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "objects" / "ab").mkdir(parents=True)
    (tree / "objects" / "ab" / ("ab" + "0" * 62)).write_bytes(KEY)  # published content
    (tree / "deep" / "objects").mkdir(parents=True)
    (tree / "cert.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n")
    (tree / "public.pem").write_bytes(b"-----BEGIN PUBLIC KEY-----\nMIIB\n")
    (tmp_path / "outside.pem").write_bytes(KEY)
    (tree / "link.pem").symlink_to(tmp_path / "outside.pem")  # never served, not followed
    (tree / "linkdir").symlink_to(tmp_path)
    os.mkfifo(tree / "fifo")  # must not hang the start
    assert find_private_key(tree, frozenset({"objects"})) is None
    # Only the top-level "objects" is skipped.
    (tree / "deep" / "objects" / "k").write_bytes(KEY)
    assert find_private_key(tree, frozenset({"objects"})) == tree / "deep" / "objects" / "k"


def test_scan_reads_only_the_head_of_each_file(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_bytes(b" " * 200 + KEY)
    assert find_private_key(tmp_path, limits=Limits(key_scan_head_bytes=100)) is None
    assert find_private_key(tmp_path, limits=Limits(key_scan_head_bytes=4096)) is not None


def test_serve_refuses_a_repository_holding_keys(tmp_path: Path, repo: Repository) -> None:
    text = f'store = "{tmp_path / "store"}"\n{TLS}[origin]\nrepository = "{repo.root}"\n'
    config = parse_config(text.encode(), "m.toml", tmp_path)
    check_no_private_keys(config)  # the keys lie beside it: fine
    shutil.move(repo.key_dir, repo.root / "keys")
    with pytest.raises(PrivateKeyServed) as e:
        check_no_private_keys(config)
    assert e.value.field == "origin.repository" and e.value.tree == str(repo.root)
    assert Path(e.value.key_file).parent == repo.root / "keys"
    assert e.value.exit_code == 2


def test_serve_refuses_a_mirror_store_holding_keys(tmp_path: Path) -> None:
    text = (
        f'store = "{tmp_path / "store"}"\ntrusted_root = "root.json"\n{TLS}'
        '[[upstreams]]\nid = "a"\nurl = "file:///srv/repo"\n'
    )
    config = parse_config(text.encode(), "m.toml", tmp_path)
    check_no_private_keys(config)  # no store yet: nothing to find, nothing made
    assert not (tmp_path / "store").exists()
    (tmp_path / "store" / "takeout" / "objects").mkdir(parents=True)
    (tmp_path / "store" / "takeout" / "x.pem").write_bytes(KEY)  # links to published content
    check_no_private_keys(config)
    (tmp_path / "store" / "tls.key").write_bytes(KEY)
    with pytest.raises(PrivateKeyServed) as e:
        check_no_private_keys(config)
    assert e.value.field == "store" and e.value.key_file == str(tmp_path / "store" / "tls.key")
