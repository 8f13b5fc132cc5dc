"""The crashes found by fuzzing and review (issue 14, item 6): each is now a typed refusal.

``parse_manifest`` raised ``TypeError`` for a list where a string belongs; the mirror config
raised ``ValueError: Invalid IPv6 URL`` for ``https://[``; every JSON reader let
``RecursionError`` (deep nesting) and ``ValueError`` (an integer of thousands of digits) through,
and so did ``tomllib``. Here each such input meets every parser that reads it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import pytest
from packaging.version import Version

from steppatch import pki
from steppatch._json import JsonLimits, JsonProblem, load_json_object, parse_json
from steppatch.cluster._core import NODE_FORMAT, parse_node_answer
from steppatch.config import parse_home_config
from steppatch.errors import (
    ComponentSourceError,
    ConfigError,
    MalformedDocument,
    NodeError,
    RecipeError,
    StagedApplyMissing,
    SteppatchError,
)
from steppatch.formats import (
    dump_manifest,
    dump_stored_manifest,
    parse_home_state,
    parse_manifest,
    parse_state,
    parse_stored_manifest,
)
from steppatch.home._staged import read_staged_record as _read_staged_record
from steppatch.limits import Limits
from steppatch.model import EntryKind, FileEntry, Manifest, RecipeKind
from steppatch.offline import PatchError, parse_patch_info
from steppatch.recipe import dump_recipe, parse_recipe, pinned_recipe
from steppatch.repo._source import read_source
from steppatch.server import MirrorConfigError, parse_config
from steppatch.server._snapshots import check_snapshot
from steppatch.server.errors import SnapshotRefused
from steppatch.trust import TrustedMetadataSet
from steppatch.trust.errors import BadMetadata

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "9" * 5000
SHA = "ab" * 32

MANIFEST = Manifest(
    "restapi",
    Version("7.0.40"),
    (
        FileEntry("lib", EntryKind.DIR, 0o755),
        FileEntry("lib/a.jar", EntryKind.FILE, 0o644, 10, SHA),
    ),
)
SNAPSHOT = dump_recipe(
    pinned_recipe(RecipeKind.SNAPSHOT, {"restapi": Version("7.0.40")}, system="bob")
)


def _staged(data: bytes) -> object:
    def fail(problem: str) -> NoReturn:
        raise StagedApplyMissing("/home", "t" * 16, f"record: {problem}")

    return _read_staged_record(data, fail)


def _stored(data: bytes) -> object:
    stored = gzip.compress(data, mtime=0)
    return parse_stored_manifest(stored, hashlib.sha256(stored).hexdigest(), "home")


#: every JSON parser of bytes from outside, with the typed error it must raise
JSON_PARSERS: list[tuple[str, Callable[[bytes], object], type[SteppatchError]]] = [
    ("recipe", lambda d: parse_recipe(d, "r.spr"), RecipeError),
    ("manifest", lambda d: parse_manifest(d, "m.json"), MalformedDocument),
    ("stored manifest", _stored, MalformedDocument),
    ("state/1", lambda d: parse_state(d, "state.json"), MalformedDocument),
    ("state/2", lambda d: parse_home_state(d, "state.json"), MalformedDocument),
    ("patch.json", lambda d: parse_patch_info(d, "p.patch"), PatchError),
    ("node answer", lambda d: parse_node_answer(d, "n2"), NodeError),
    ("staged record", _staged, StagedApplyMissing),
    ("root metadata", lambda d: TrustedMetadataSet(d, NOW), BadMetadata),
    ("snapshot upload", lambda d: check_snapshot("bob.spr", "bob", d), SnapshotRefused),
]
IDS = [name for name, _, _ in JSON_PARSERS]


def _assert_refused(error: SteppatchError, fragment: str) -> None:
    assert fragment in str(error)
    if isinstance(error, SnapshotRefused):
        assert error.status == 400


@pytest.mark.parametrize(("name", "parse", "error"), JSON_PARSERS, ids=IDS)
@pytest.mark.parametrize(
    "document",
    [
        DEEP,  # the whole document
        '{"format": "x", "components": ' + DEEP + "}",  # one value
        '{"format": "x", "a": "' + "[" * 1000 + '", "b": ' + "[" * 65 + "]" * 65 + "}",
    ],
    ids=["whole", "value", "past-strings"],
)
def test_deep_nesting_is_refused(
    name: str, parse: Callable[[bytes], object], error: type[SteppatchError], document: str
) -> None:
    with pytest.raises(error) as caught:
        parse(document.encode())
    _assert_refused(caught.value, "nested deeper than 64 levels")


@pytest.mark.parametrize(("name", "parse", "error"), JSON_PARSERS, ids=IDS)
@pytest.mark.parametrize("number", [HUGE, "-" + HUGE, "1" * 21])
def test_huge_integer_is_refused(
    name: str, parse: Callable[[bytes], object], error: type[SteppatchError], number: str
) -> None:
    with pytest.raises(error) as caught:
        parse(('{"format": "x", "size": ' + number + "}").encode())
    _assert_refused(caught.value, "an integer of more than 20 digits")


def test_bounds_come_from_limits() -> None:
    data = dump_manifest(MANIFEST)  # nests three levels: {"entries": [{...}]}
    assert parse_manifest(data, "m.json", Limits(max_json_depth=3)) == MANIFEST
    with pytest.raises(MalformedDocument, match="nested deeper than 2 levels"):
        parse_manifest(data, "m.json", Limits(max_json_depth=2))
    with pytest.raises(MalformedDocument, match="more than 1 digits"):
        parse_manifest(data, "m.json", Limits(max_json_int_digits=1))  # the size is 10


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("[" * 64 + "]" * 64, None),  # exactly the limit: accepted
        ('{"a": "[[[[\\"[[[[\\\\"}', {"a": '[[[["[[[[\\'}),  # brackets and escapes in strings
        ('["\\\\", ' + "[" * 63 + "]" * 63 + "]", None),
        ("12345678901234567890", 12345678901234567890),  # 20 digits
    ],
)
def test_reader_accepts_what_is_within_bounds(text: str, value: Any) -> None:
    parsed = parse_json(text.encode(), JsonLimits())
    if value is not None:
        assert parsed == value


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("[" * 65 + "]" * 65, "nested deeper than 64 levels"),
        ('["\\"", ' + "[" * 64 + "]" * 64 + "]", "nested deeper than 64 levels"),
        ("[" * 70, "nested deeper than 64 levels"),  # cut short, still too deep
        ("[[[", "Expecting value"),  # cut short: an ordinary syntax error
        ('{"a": NaN}', "NaN is not a JSON value"),
        ('{"a": -Infinity}', "-Infinity is not a JSON value"),
    ],
)
def test_reader_refuses(text: str, detail: str) -> None:
    with pytest.raises(JsonProblem) as caught:
        parse_json(text.encode())
    assert detail in caught.value.detail
    problems: list[str] = []

    def fail(problem: str) -> NoReturn:
        problems.append(problem)
        raise MalformedDocument("x", problem)

    with pytest.raises(MalformedDocument):
        load_json_object(text.encode(), fail)
    assert problems == [f"not UTF-8 JSON ({caught.value.detail})"]


# --- the named crashes ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["type", "path", "mode", "sha256", "target"])
@pytest.mark.parametrize("wrong", [["file"], {"k": "v"}])
def test_manifest_entry_with_a_list_or_object_for_a_string(field: str, wrong: object) -> None:
    doc = json.loads(dump_manifest(MANIFEST))
    entry = doc["entries"][1]
    if field == "target":
        entry.update(type="symlink", target="a.jar")
        del entry["mode"], entry["size"], entry["sha256"]
    entry[field] = wrong
    with pytest.raises(MalformedDocument) as caught:
        parse_manifest(json.dumps(doc).encode(), "m.json")
    assert caught.value.source == "m.json"
    assert f"entries[1].{field}: expected str, got {type(wrong).__name__}" in caught.value.problem


def test_stored_manifest_with_a_list_for_a_type() -> None:
    doc = json.loads(gzip.decompress(dump_stored_manifest(MANIFEST)))
    doc["entries"][0]["type"] = ["dir"]
    with pytest.raises(MalformedDocument, match=r"entries\[0\]\.type: expected str"):
        _stored(json.dumps(doc).encode())


TLS = '[tls]\ncert = "s.crt"\nkey = "s.key"\nclient_ca = "ca.crt"\n'
MIRROR = (
    'store = "/var/lib/m"\ntrusted_root = "root.json"\n' + TLS
    + '[[upstreams]]\nid = "dk1"\nurl = "URL"\n'
    + '[upstream_tls]\nca = "ca.crt"\n'
)  # fmt: skip


def _mirror(text: str) -> object:
    return parse_config(text.encode(), "/etc/m/mirror.toml", Path("/etc/m"))


@pytest.mark.parametrize(
    "url", ["https://[", "https://[::1", "https://[not-ipv6]/", "https://h:99999", "https://h:x"]
)
def test_mirror_upstream_url_that_urllib_cannot_parse(url: str) -> None:
    with pytest.raises(MirrorConfigError) as caught:
        _mirror(MIRROR.replace("URL", url))
    assert caught.value.field == "upstreams[0].url"
    assert caught.value.path == "/etc/m/mirror.toml"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('listen = "h:²"', "listen"),  # a digit to str.isdigit, not to int()
        ('listen = "h:' + "1" * 5000 + '"', "listen"),
        ("poll_interval_s = nan", "poll_interval_s"),
        ("poll_interval_s = inf", "poll_interval_s"),
        ("bulk_backoff_factor = 0x" + "f" * 5000, "bulk_backoff_factor"),  # float() overflows
    ],
)
def test_mirror_values_that_crashed(line: str, field: str) -> None:
    with pytest.raises(MirrorConfigError) as caught:
        _mirror(line + "\n" + MIRROR.replace("URL", "https://dk1.example"))
    assert caught.value.field == field


def test_mirror_upstream_name_must_be_a_string() -> None:
    text = MIRROR.replace("URL", "https://dk1.example")
    text = text.replace('id = "dk1"', 'id = "dk1"\nname = [1]')
    with pytest.raises(MirrorConfigError) as caught:
        _mirror(text)
    assert caught.value.field == "upstreams[0].name"


TOML_BOMBS = ["x = " + DEEP, "x = " + HUGE, "x = " + "{a = " * 5000 + "1" + "}" * 5000]


@pytest.mark.parametrize("bomb", TOML_BOMBS, ids=["deep-array", "huge-int", "deep-table"])
def test_toml_that_tomllib_does_not_refuse_cleanly(bomb: str, tmp_path: Path) -> None:
    with pytest.raises(MirrorConfigError) as mirror:
        _mirror(bomb + "\n" + MIRROR.replace("URL", "https://dk1.example"))
    assert mirror.value.field is None and "not valid TOML" in mirror.value.problem
    with pytest.raises(ConfigError) as home:
        parse_home_config(('updates = "https://x"\n' + bomb).encode(), "steppatch.toml")
    assert home.value.path == "steppatch.toml" and "not valid TOML" in home.value.problem
    source = tmp_path / "restapi-7.0"
    (source / "files").mkdir(parents=True)
    (source / "component.toml").write_text(bomb + "\n")
    with pytest.raises(ComponentSourceError) as component:
        read_source(source)
    assert component.value.path == str(source / "component.toml")
    assert "not valid TOML" in component.value.problem


@pytest.mark.parametrize("field", ["requested", "displaced"])
def test_staged_record_with_lists_in_a_list_of_names(field: str) -> None:
    record = {
        "format": "steppatch-staged/1", "tree": "t" * 16, "base": "f" * 64, "hot": False,
        "requested": ["restapi"], "repairs": 0, "displaced": [],
    }  # fmt: skip
    record[field] = [["restapi"]]
    with pytest.raises(StagedApplyMissing) as caught:
        _staged(json.dumps(record).encode())
    assert f"record: {field}: expected a list of strings" in caught.value.problem


def test_node_answer_with_a_list_for_the_format() -> None:
    data = json.dumps({"format": [NODE_FORMAT]}).encode()
    with pytest.raises(NodeError) as caught:
        parse_node_answer(data, "n2")
    assert caught.value.node == "n2" and "format: expected str" in caught.value.problem


def _with_der(pem: bytes, label: str, change: Callable[[bytes], bytes]) -> bytes:
    der = change(base64.b64decode(b"".join(pem.strip().splitlines()[1:-1])))
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode()


# id-ecPublicKey (1.2.840.10045.2.1), and the same with its first byte changed (0.26...): what the
# fuzzer found made cryptography raise UnsupportedAlgorithm from a request's signature check
EC_KEY_OID = bytes.fromhex("06072a8648ce3d0201")
UNKNOWN_OID = bytes.fromhex("06071a8648ce3d0201")


def test_request_with_an_unknown_key_type() -> None:
    ca = pki.make_ca()
    request = pki.make_request("bob").csr_pem
    bad = _with_der(
        request, "CERTIFICATE REQUEST", lambda der: der.replace(EC_KEY_OID, UNKNOWN_OID, 1)
    )
    with pytest.raises(pki.CertificateError) as caught:
        pki.sign_request(ca, bad, source="bob.csr")
    assert caught.value.source == "bob.csr"


def test_certificate_with_an_unknown_key_type() -> None:
    ca = pki.make_ca()
    cert = pki.issue_client_cert(ca, "bob")
    bad = _with_der(cert.cert_pem, "CERTIFICATE", lambda d: d.replace(EC_KEY_OID, UNKNOWN_OID))
    with pytest.raises(pki.CertificateError):
        pki.check_key_matches(bad, cert.key_pem, "bob.crt")
    with pytest.raises(pki.CertificateError):
        pki.check_issued_by(bad, ca.cert_pem, "bob.crt")


def test_a_valid_snapshot_still_passes() -> None:
    names, recipe = check_snapshot("bob.spr", "bob", SNAPSHOT)
    assert names == ["bob"] and recipe.system == "bob"


@pytest.mark.parametrize("url", ["https://[", "https://[::1", "https://h:99999", "https://h:x/"])
def test_home_mirror_url_that_urllib_cannot_parse(url: str) -> None:
    from steppatch.transport._base import fetcher_for

    # steppatch.toml takes the URL as text; the transport edge reads it, and refuses it typed
    config = parse_home_config(f'updates = "{url}"\n'.encode(), "steppatch.toml")
    with pytest.raises(ConfigError) as caught:
        fetcher_for(config.updates)
    assert caught.value.path == url


#: found by the long fuzz run: cryptography raised DuplicateExtension (a changed byte made a second
#: keyUsage extension) and InvalidVersion (a request of version 1), neither of them a ValueError
DUPLICATE_EXTENSION_CERT = (
    b"-----BEGIN CERTIFICATE-----\n"
    b"MIIByzCCAXGgAwIBAgIUb5HcPHK4s/vra76Twn4wzfU0gKkwCgYIKoZIzj0EAwIw\n"
    b"HzEdMBsGA1UEAwwUc3RlcHBhdGNoIHByaXZhdGUgQ0EwHhcNMjYxMjA0MjIxNjI1\n"
    b"WhcNMjkwMzA4MjIyMTI1WjAOMQwwCgYDVQQDDANib2IwWTATBgcqhkjOPQIBBggq\n"
    b"hkjOPQMBBwNCAASdShJP+ATx4NozUYbBTNOi7D35/cpbB2KXEv7a/q89ug0ujUO+\n"
    b"YXKI/1aI6ElyOH5O/iTKmk8AGReIbq5KbcD6o4GbMIGYMAwGA1UdEwEB/wQCMAAw\n"
    b"DgYDVR0PAQH/BAQDAgeAMB0GA1UdDwQWBBQE4ZggIUN34w1EMtD0tsMauLfBzzAf\n"
    b"BgNVHSMEGDAWgBT3GYRjxwQcUoSMQhPfE/swhkB2JTATBgNVHSUEDDAKBggrBgEF\n"
    b"BQcDAjAjBgNVHREEHDAahhh1cm46c3RlcHBhdGNoOnN5c3RlbTpib2IwCgYIKoZI\n"
    b"zj0EAwIDSAAwRQIgGPdAlX2A2PYhsgSVRa8kj51BLwpTNS1fcKSctLZLHqACIQDr\n"
    b"Hdr3OmchQoLPCz4OLMYcEnEOe21xVdZyTkuRvIu0Wg==\n"
    b"-----END CERTIFICATE-----\n"
)
VERSION_1_REQUEST = (
    b"-----BEGIN CERTIFICATE REQUEST-----\n"
    b"MIH/MIGmAgEBMA4xDDAKBgNVBAMMA2JvYjBZMBMGByqGSM49AgEGCCqGSM49AwEH\n"
    b"A0IABIQsxK8T1bHrFco2skMvYeoKlv2XPOMdxPEubU6kBkJrH9qGh/PVd2kPvaD7\n"
    b"0tK1QxmKi2S1kN+oV9rQACBirZOgNjA0BgkqhkiG9w0BCQ4xJzAlMCMGA1UdEQQc\n"
    b"MBqGGHVybjpzdGVwcGF0Y2g6c3lzdGVtOmJvYjAKBggqhkjOPQQDAgNIADBFAiEA\n"
    b"5uvPJ62gaibhtghIIBtNhYeOb42uskPIW3vdYRBpPSACICkDFQU17BfHtoBJNdHh\n"
    b"3TfIPCW8Twsab4GamTQxy0yz\n"
    b"-----END CERTIFICATE REQUEST-----\n"
)


def test_certificate_with_a_duplicate_extension() -> None:
    with pytest.raises(pki.CertificateError) as caught:
        pki.read_certificate(DUPLICATE_EXTENSION_CERT, "bob.crt")
    assert caught.value.source == "bob.crt"


def test_request_of_an_unknown_version() -> None:
    with pytest.raises(pki.CertificateError) as caught:
        pki.sign_request(pki.make_ca(), VERSION_1_REQUEST, source="bob.csr")
    assert caught.value.source == "bob.csr"
