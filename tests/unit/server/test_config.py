"""mirror.toml parsing: defaults, modes, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from steppatch.server import DownloadMode, MirrorConfigError, parse_config

TLS = '[tls]\ncert = "s.crt"\nkey = "s.key"\nclient_ca = "ca.crt"\n'
ORIGIN = TLS + '[origin]\nrepository = "/srv/repo"\n'
MIRROR = (
    'trusted_root = "root.json"\n' + TLS
    + '[[upstreams]]\nid = "dk1"\nurl = "https://dk1.example:8443"\npriority = 20\n'
    + '[[upstreams]]\nid = "dk2"\nurl = "https://dk2.example:8443/"\n'
    + '[upstream_tls]\ncert = "m.crt"\nkey = "m.key"\nca = "ca.crt"\n'
)


def parse(text: str) -> object:
    return parse_config(text.encode(), "/etc/m/mirror.toml", Path("/etc/m"))


def test_origin_defaults() -> None:
    c = parse('store = "st"\n' + ORIGIN)
    assert not c.is_mirror  # type: ignore[attr-defined]
    assert c.download is DownloadMode.RELEASED  # type: ignore[attr-defined]
    assert c.bulk_download_mbit_per_s == 10 and c.bulk_backoff_factor == 1.5  # type: ignore[attr-defined]
    assert c.store == Path("/etc/m/st")  # type: ignore[attr-defined]
    assert str(c.listen) == "127.0.0.1:8443"  # type: ignore[attr-defined]


def test_mirror() -> None:
    c = parse('store = "/var/lib/m"\ndownload = "historic"\nlisten = "0.0.0.0:443"\n' + MIRROR)
    assert c.is_mirror and c.download is DownloadMode.HISTORIC  # type: ignore[attr-defined]
    assert [u.url for u in c.upstreams] == ["https://dk1.example:8443",  # type: ignore[attr-defined]
                                            "https://dk2.example:8443"]
    assert c.upstreams[0].priority == 20 and c.upstreams[1].priority == 0  # type: ignore[attr-defined]
    assert c.trusted_root == Path("/etc/m/root.json")  # type: ignore[attr-defined]
    assert c.bulk_bytes_per_s == 1_250_000  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('store = "s"\ndownload = "SOMETIMES"\n' + ORIGIN, "download"),
        ('store = "s"\nbulk_download_mbit_per_s = 0\n' + ORIGIN, "bulk_download_mbit_per_s"),
        ('store = "s"\nbulk_backoff_factor = -1\n' + ORIGIN, "bulk_backoff_factor"),
        ('store = "s"\nbulk_backoff_factor = "fast"\n' + ORIGIN, "bulk_backoff_factor"),
        ('store = "s"\nlisten = "localhost"\n' + ORIGIN, "listen"),
        ('store = "s"\nadmin_listen = "h:99999"\n' + ORIGIN, "admin_listen"),
        ('store = "s"\nworkers = 0\n' + ORIGIN, "workers"),
        ('store = "s"\ntypo = 1\n' + ORIGIN, "typo"),
        (ORIGIN, "store"),
        ('store = "s"\n[origin]\nrepository = "r"\n', "tls"),
        ('store = "s"\n' + TLS, None),
        ('store = "s"\n' + MIRROR + '[origin]\nrepository = "r"\n', None),
        ('store = "s"\n' + MIRROR.replace('trusted_root = "root.json"\n', ""), "trusted_root"),
        ('store = "s"\n' + MIRROR.replace("https://dk1", "http://dk1"), "upstreams[0].url"),
        ('store = "s"\n' + MIRROR.replace('id = "dk2"', 'id = "dk1"'), "upstreams"),
        ('store = "s"\n' + MIRROR.replace("priority = 20", 'priority = "high"'),
         "upstreams[0].priority"),
        ('store = "s"\n' + MIRROR.replace('cert = "m.crt"\n', ""), "upstream_tls.cert"),
        ('store = "s"\n' + MIRROR.split("[upstream_tls]")[0], "upstream_tls"),
        ('store = "s"\n' + TLS.replace('key = "s.key"\n', "") + '[origin]\nrepository = "r"\n',
         "tls.key"),
        ('store = "s"\n' + TLS + '[origin]\nrepo = "r"\n', "origin.repo"),
        ("store = [", None),
    ],
)
def test_errors_name_the_field(text: str, field: str | None) -> None:
    with pytest.raises(MirrorConfigError) as info:
        parse(text)
    assert info.value.field == field
    assert info.value.path == "/etc/m/mirror.toml"
    if field:
        assert repr(field) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    from steppatch.server import load_config

    with pytest.raises(MirrorConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.field is None and info.value.exit_code == 2


@pytest.mark.parametrize("name", ["origin.toml", "mirror.toml"])
def test_examples_parse(name: str) -> None:
    from steppatch.server import load_config

    root = Path(__file__).resolve().parents[3]
    config = load_config(root / "examples/mirror" / name)
    assert config.is_mirror == (name == "mirror.toml")


def test_snapshot_bounds() -> None:
    c = parse('store = "s"\n' + ORIGIN)
    assert (c.snapshot_keep, c.snapshot_quota_bytes, c.snapshot_rate,  # type: ignore[attr-defined]
            c.snapshot_outbox_max) == (20, 256 * 1024 * 1024, 6.0, 1000)  # type: ignore[attr-defined]
    c = parse('store = "s"\nsnapshot_keep = 5\nsnapshot_quota_bytes = 65536\n'
              'snapshot_rate = 0\nsnapshot_outbox_max = 10\n' + ORIGIN)
    assert (c.snapshot_keep, c.snapshot_quota_bytes, c.snapshot_rate,  # type: ignore[attr-defined]
            c.snapshot_outbox_max) == (5, 65536, 0.0, 10)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("snapshot_keep = 0", "snapshot_keep"),
        ("snapshot_keep = 1.5", "snapshot_keep"),
        ("snapshot_quota_bytes = 0", "snapshot_quota_bytes"),
        ("snapshot_rate = -1", "snapshot_rate"),
        ('snapshot_rate = "fast"', "snapshot_rate"),
        ("snapshot_outbox_max = 0", "snapshot_outbox_max"),
        ("snapshot_retention = 3", "snapshot_retention"),
    ],
)
def test_snapshot_bound_errors_name_the_field(line: str, field: str) -> None:
    with pytest.raises(MirrorConfigError) as info:
        parse(f'store = "s"\n{line}\n' + ORIGIN)
    assert info.value.field == field
def _origin_config(tmp_path: Path, store: str, repository: str) -> bytes:
    return (f'store = "{store}"\n' + TLS + f'[origin]\nrepository = "{repository}"\n').encode()


@pytest.mark.parametrize(
    ("store", "repository"),
    [
        ("repo", "repo"),  # equal
        ("repo/store", "repo"),  # the store inside the repository
        ("repo/./x/../store", "repo"),  # ... spelled otherwise
        ("st", "st/repo"),  # the repository inside the store
        ("link/store", "repo"),  # through a symlink to the repository
        ("st", "other/../st/repo"),
    ],
)
def test_store_and_repository_must_not_overlap(
    tmp_path: Path, store: str, repository: str
) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "repo")
    (tmp_path / "other").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(MirrorConfigError) as e:
        parse_config(_origin_config(tmp_path, store, repository), "m.toml", tmp_path)
    assert e.value.field == "store" and e.value.path == "m.toml"
    assert "keep them apart" in e.value.problem
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing made


def test_store_beside_the_repository_is_fine(tmp_path: Path) -> None:
    # "repo-store" starts with "repo" as text, but does not lie inside it.
    c = parse_config(_origin_config(tmp_path, "repo-store", "repo"), "m.toml", tmp_path)
    assert c.store == tmp_path / "repo-store"


def test_stale_after_days() -> None:
    assert parse('store = "st"\n' + ORIGIN).stale_after_days == 7  # type: ignore[attr-defined]
    c = parse('store = "st"\nstale_after_days = 0.5\n' + ORIGIN)
    assert c.stale_after_days == 0.5  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["0", "-1", '"7d"', "1e9", "nan", "true"])
def test_stale_after_days_errors_name_the_field(value: str) -> None:
    with pytest.raises(MirrorConfigError) as info:
        parse(f'store = "st"\nstale_after_days = {value}\n' + ORIGIN)
    assert info.value.field == "stale_after_days"
