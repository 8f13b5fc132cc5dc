"""mirror.toml: ``[tls] crl`` and ``admin_token`` (with the rule that a non-loopback admin port
needs a token)."""

from __future__ import annotations

from pathlib import Path

import pytest

from steppatch.server import MirrorConfig, MirrorConfigError, parse_config

TLS = '[tls]\ncert = "s.crt"\nkey = "s.key"\nclient_ca = "ca.crt"\n'
ORIGIN = '[origin]\nrepository = "/srv/repo"\n'
TOKEN = "0123456789abcdef"


def parse(text: str) -> MirrorConfig:
    return parse_config(text.encode(), "/etc/m/mirror.toml", Path("/etc/m"))


def test_crl_is_optional_and_relative_to_the_config() -> None:
    assert parse('store = "s"\n' + TLS + ORIGIN).tls.crl is None
    c = parse('store = "s"\n' + TLS + 'crl = "crl.pem"\ncrl_poll_s = 0.5\n' + ORIGIN)
    assert c.tls.crl == Path("/etc/m/crl.pem") and c.tls.crl_poll_s == 0.5
    assert parse('store = "s"\n' + TLS + 'crl = "c"\n' + ORIGIN).tls.crl_poll_s == 5.0


@pytest.mark.parametrize(
    ("extra", "field"),
    [('crl = ""\n', "tls.crl"), ("crl = 3\n", "tls.crl"), ("crl_poll_s = 0\n", "tls.crl_poll_s")],
)
def test_bad_crl_fields(extra: str, field: str) -> None:
    with pytest.raises(MirrorConfigError) as info:
        parse('store = "s"\n' + TLS + extra + ORIGIN)
    assert info.value.field == field


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:8080", "127.0.0.5:1", "[::1]:8080", "localhost:8080"]
)
def test_a_loopback_admin_port_needs_no_token(listen: str) -> None:
    c = parse(f'store = "s"\nadmin_listen = "{listen}"\n' + TLS + ORIGIN)
    assert c.admin_token is None


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:8080", "[::]:8080", "10.0.0.5:8080", "admin.example.com:8080"]
)
def test_a_non_loopback_admin_port_needs_a_token(listen: str) -> None:
    text = f'store = "s"\nadmin_listen = "{listen}"\n'
    with pytest.raises(MirrorConfigError) as info:
        parse(text + TLS + ORIGIN)
    assert info.value.field == "admin_token"
    assert "loopback" in info.value.problem
    c = parse(text + f'admin_token = "{TOKEN}"\n' + TLS + ORIGIN)
    assert c.admin_token == TOKEN
    assert TOKEN not in repr(c)  # kept out of logs and tracebacks


@pytest.mark.parametrize(
    "value", ['""', '"short"', "12345678901234567890", f'" {TOKEN}"', '"0123456789abcde\\n"']
)
def test_a_bad_token_is_refused(value: str) -> None:
    with pytest.raises(MirrorConfigError) as info:
        parse(f'store = "s"\nadmin_token = {value}\n' + TLS + ORIGIN)
    assert info.value.field == "admin_token"
