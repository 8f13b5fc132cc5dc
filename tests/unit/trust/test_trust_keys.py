from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from steppatch.errors import InputError
from steppatch.trust import (
    BadKeyFile,
    BadMetadata,
    PublicKey,
    SigningKey,
    canonical_bytes,
    sha256_hex,
)


def test_keyid_is_sha256_of_canonical_public_form() -> None:
    key = SigningKey.generate()
    assert key.keyid == sha256_hex(canonical_bytes(key.public.to_json()))
    assert key.public.to_json() == {
        "keytype": "ed25519",
        "scheme": "ed25519",
        "keyval": {"public": key.public.raw.hex()},
    }


def test_public_key_json_round_trip_is_equal_and_hashable() -> None:
    public = SigningKey.generate().public
    again = PublicKey.from_json(public.to_json())
    assert again == public
    assert again.keyid == public.keyid
    assert len({again, public}) == 1


@pytest.mark.parametrize("password", [None, b"correct horse"])
def test_pem_round_trip_keeps_the_key(password: bytes | None) -> None:
    key = SigningKey.generate()
    pem = key.to_pem(password)
    assert pem.startswith(b"-----BEGIN ")
    again = SigningKey.from_pem(pem, password)
    assert again.public == key.public
    assert key.public.verify(again.sign(b"data"), b"data")


def test_pem_with_wrong_password_is_a_bad_key_file() -> None:
    pem = SigningKey.generate().to_pem(b"right")
    with pytest.raises(BadKeyFile) as caught:
        SigningKey.from_pem(pem, b"wrong")
    assert isinstance(caught.value, InputError)


def test_pem_of_another_key_type_is_a_bad_key_file() -> None:
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(BadKeyFile, match="Ed25519"):
        SigningKey.from_pem(other)


def test_garbage_pem_is_a_bad_key_file() -> None:
    with pytest.raises(BadKeyFile):
        SigningKey.from_pem(b"not a key")


def test_verify_refuses_other_data_and_other_keys() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    sig = key.sign(b"data")
    assert key.public.verify(sig, b"data")
    assert not key.public.verify(sig, b"datA")
    assert not other.public.verify(sig, b"data")
    assert not key.public.verify(b"short", b"data")


def test_signing_key_repr_shows_no_secret() -> None:
    key = SigningKey.generate()
    assert repr(key) == f"SigningKey(keyid={key.keyid!r})"


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("a string", "key"),
        ({"keytype": "ed25519", "scheme": "ed25519"}, "key"),
        ({"keytype": "rsa", "scheme": "ed25519", "keyval": {"public": "00" * 32}}, "key.keytype"),
        ({"keytype": "ed25519", "scheme": "x", "keyval": {"public": "00" * 32}}, "key.scheme"),
        ({"keytype": "ed25519", "scheme": "ed25519", "keyval": {}}, "key.keyval"),
        (
            {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "AB" * 32}},
            "key.keyval.public",
        ),
        (
            {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "00" * 31}},
            "key.keyval.public",
        ),
    ],
)
def test_public_key_from_bad_json_names_the_field(value: object, field: str) -> None:
    with pytest.raises(BadMetadata) as caught:
        PublicKey.from_json(value)
    assert caught.value.field == field
