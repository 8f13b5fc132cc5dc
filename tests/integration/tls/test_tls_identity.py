"""mTLS against a real nginx: each certificate problem is named, and nothing is stored."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from steppatch.errors import ConfigError, MissingFile
from steppatch.pki import CertificateError
from steppatch.store import ObjectStore
from steppatch.transport import (
    ConnectionFailed,
    HttpsFetcher,
    TimedOut,
    TlsConfig,
    TlsError,
    TlsProblem,
    download_objects,
    fetch_bytes,
    fetcher_for,
)
from tests.integration.tls.conftest import FAST, Pki, Published
from tests.integration.tls.servers import FaultProxy, Nginx, free_ports


def assert_nothing_stored(store: ObjectStore) -> None:
    assert not store.root.exists() or [p for p in store.root.rglob("*") if p.is_file()] == []


def try_download(url: str, tls: TlsConfig, published: Published, tmp_path: Path) -> TlsError:
    store = ObjectStore(tmp_path / "cache")
    with pytest.raises(TlsError) as e:
        download_objects(HttpsFetcher(url, tls, FAST), published.small[:3], store)
    assert_nothing_stored(store)
    return e.value


def test_fetches_and_identifies_the_server(test_pki: Pki, nginx: Nginx, published: Published,
                                           tmp_path: Path) -> None:
    fetcher = fetcher_for(nginx.url("main"), test_pki.client(), FAST)
    assert isinstance(fetcher, HttpsFetcher)
    index = fetch_bytes(fetcher, "index.json", 1000, "index")
    assert index == (published.root / "index.json").read_bytes()
    with pytest.raises(MissingFile) as e:
        fetch_bytes(fetcher, "no/such/file", 1000, "x")
    assert e.value.url.endswith("/no/such/file")
    store = ObjectStore(tmp_path / "cache")
    result = download_objects(fetcher, published.small, store)
    assert result.downloaded == len(published.small)
    identity = fetcher.probe()
    assert identity.tls_version in ("TLSv1.2", "TLSv1.3")
    assert identity.certificate.ip_addresses == ("127.0.0.1",)
    assert identity.certificate.issuer == "CN=steppatch test CA"
    fetcher.close()


def test_no_client_certificate(test_pki: Pki, nginx: Nginx, published: Published,
                               tmp_path: Path) -> None:
    e = try_download(nginx.url("main"), test_pki.no_cert, published, tmp_path)
    assert e.kind is TlsProblem.CLIENT_CERT_MISSING
    assert not e.probable  # nginx says so in its answer
    assert "steppatch enroll" in str(e)


def test_no_client_certificate_tls13_closed_connection(test_pki: Pki, proxy: FaultProxy,
                                                       published: Published,
                                                       tmp_path: Path) -> None:
    # A server that checks in the handshake (Python's ssl, like the built-in server): with
    # TLS 1.3 the client learns of it only as an alert or a closed connection on its first read.
    e = try_download(proxy.url, test_pki.no_cert, published, tmp_path)
    assert e.kind is TlsProblem.CLIENT_CERT_MISSING
    assert "client certificate" in str(e)


@pytest.mark.parametrize("server", ["nginx", "proxy"])
def test_client_certificate_from_another_ca(test_pki: Pki, nginx: Nginx, proxy: FaultProxy,
                                            published: Published, tmp_path: Path,
                                            server: str) -> None:
    url = nginx.url("main") if server == "nginx" else proxy.url
    e = try_download(url, test_pki.client("client-other-ca"), published, tmp_path)
    assert e.kind is TlsProblem.CLIENT_CERT_REJECTED
    assert "another CA" in str(e)


def test_expired_client_certificate_is_named_before_connecting(test_pki: Pki, nginx: Nginx) -> None:
    with pytest.raises(CertificateError) as e:
        HttpsFetcher(nginx.url("main"), test_pki.client("client-expired"), FAST)
    assert e.value.source == str(test_pki.p("client-expired.crt"))
    assert "expired on" in e.value.problem
    assert e.value.exit_code == 2


@pytest.mark.parametrize(
    ("site", "kind"),
    [
        ("wrong-host", TlsProblem.SERVER_HOSTNAME),
        ("expired", TlsProblem.SERVER_EXPIRED),
        ("other-ca", TlsProblem.SERVER_UNTRUSTED),
    ],
)
def test_server_certificate_problems(test_pki: Pki, nginx: Nginx, published: Published,
                                     tmp_path: Path, site: str, kind: TlsProblem) -> None:
    e = try_download(nginx.url(site), test_pki.client(), published, tmp_path)
    assert e.kind is kind
    assert e.url.startswith(nginx.url(site))
    with pytest.raises(TlsError) as probed:
        HttpsFetcher(nginx.url(site), test_pki.client(), FAST).probe()
    assert probed.value.kind is kind


def test_pinned_ca_is_not_overridden_by_the_environment(
    test_pki: Pki, nginx: Nginx, published: Published, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The environment trusts the other CA (and proxies): the home still trusts only its own.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(test_pki.p("other-ca.crt")))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(test_pki.p("other-ca.crt")))
    monkeypatch.setenv("SSL_CERT_FILE", str(test_pki.p("other-ca.crt")))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    e = try_download(nginx.url("other-ca"), test_pki.client(), published, tmp_path)
    assert e.kind is TlsProblem.SERVER_UNTRUSTED
    fetcher = HttpsFetcher(nginx.url("main"), test_pki.client(), FAST)
    assert fetch_bytes(fetcher, "index.json", 1000, "index")  # no proxy was used
    assert [c["subject"] for c in fetcher._ctx.get_ca_certs()] == [
        ((("commonName", "steppatch test CA"),),)
    ]


def test_refused_and_stalled(test_pki: Pki, proxy: FaultProxy, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    fetcher = HttpsFetcher(f"https://127.0.0.1:{port}", test_pki.client(), FAST)
    with pytest.raises(ConnectionFailed) as refused:
        fetch_bytes(fetcher, "index.json", 1000, "index")
    assert refused.value.cause == "refused"
    proxy.mode = "stall"
    started = dt.datetime.now()
    with pytest.raises(TimedOut) as stalled:
        fetch_bytes(HttpsFetcher(proxy.url, test_pki.client(), FAST), "index.json", 1000, "i")
    assert stalled.value.phase in ("connect", "read")
    assert (dt.datetime.now() - started).total_seconds() < 5


def test_https_needs_a_ca_and_http_is_refused(test_pki: Pki) -> None:
    with pytest.raises(ConfigError) as e:
        fetcher_for("https://127.0.0.1:1")
    assert "--ca" in e.value.problem
    with pytest.raises(ConfigError):
        fetcher_for("http://127.0.0.1:1", test_pki.client())
    with pytest.raises(ConfigError):
        TlsConfig(test_pki.ca, cert_file=test_pki.p("client.crt"))
    with pytest.raises(CertificateError):
        TlsConfig(test_pki.ca, test_pki.p("client.crt"), test_pki.p("proxy.key"))
        HttpsFetcher("https://127.0.0.1:1", TlsConfig(
            test_pki.ca, test_pki.p("client.crt"), test_pki.p("proxy.key")), FAST)
