"""Unit tests for shared.consent.crypto."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from shared.consent.crypto import NONCE_BYTES, Sealed, TokenCipher
from shared.errors import SealedValueUnreadableError, SecretStoreError
from tests.unit.fakes import FakeSecrets

KEY_NAME = "token-encryption-key"
KEY_V1 = base64.b64encode(bytes(range(32))).decode("ascii")
KEY_V2 = base64.b64encode(bytes(range(100, 132))).decode("ascii")
ROW = "tenant-1|user-1|mail"


@pytest.fixture
def secrets() -> FakeSecrets:
    """A secret source holding version v1 of the key as current."""
    source = FakeSecrets()
    source.set(KEY_NAME, "v1", KEY_V1)
    return source


def _flip_byte(ciphertext: str, index: int) -> str:
    raw = bytearray(base64.b64decode(ciphertext))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode("ascii")


def test_token_cipher_round_trip(secrets):
    """A sealed value opens to the same text with the same associated data."""
    # GIVEN a cipher and a token cache with non-ASCII text
    cipher = TokenCipher(secrets, KEY_NAME)
    plaintext = '{"RefreshToken": {"x": "secret-ü"}}'

    # WHEN it is sealed and opened
    sealed = cipher.seal(plaintext, ROW)
    opened = cipher.open(sealed, ROW)

    # THEN the text comes back, the ciphertext does not show it, and v1 is recorded
    assert opened == plaintext
    assert "secret" not in sealed.ciphertext
    assert sealed.key_version == "v1"


def test_token_cipher_seals_with_fresh_nonce(secrets):
    """Sealing the same text twice gives two different ciphertexts."""
    # GIVEN a cipher
    cipher = TokenCipher(secrets, KEY_NAME)

    # WHEN the same text is sealed twice
    first, second = cipher.seal("cache", ROW), cipher.seal("cache", ROW)

    # THEN the nonces, and so the ciphertexts, differ
    first_raw, second_raw = (base64.b64decode(s.ciphertext) for s in (first, second))
    assert first_raw[:NONCE_BYTES] != second_raw[:NONCE_BYTES]
    assert first.ciphertext != second.ciphertext


def test_token_cipher_open_with_other_associated_data_fails(secrets):
    """A value sealed for one connection does not open for another."""
    # GIVEN a value sealed for one row
    cipher = TokenCipher(secrets, KEY_NAME)
    sealed = cipher.seal("cache", ROW)

    # WHEN it is opened for another row THEN it is refused
    with pytest.raises(SecretStoreError):
        cipher.open(sealed, "tenant-1|user-2|mail")


@pytest.mark.parametrize("index", [0, NONCE_BYTES, -1], ids=["nonce", "body", "tag"])
def test_token_cipher_open_tampered_ciphertext_fails(secrets, index):
    """Flipping one bit of the nonce, body or tag makes the value refuse to open."""
    # GIVEN a sealed value with one bit flipped
    cipher = TokenCipher(secrets, KEY_NAME)
    sealed = cipher.seal("cache", ROW)
    tampered = replace(sealed, ciphertext=_flip_byte(sealed.ciphertext, index))

    # WHEN it is opened THEN it is refused
    with pytest.raises(SecretStoreError):
        cipher.open(tampered, ROW)


@pytest.mark.parametrize("ciphertext", ["not base64!", "", "AAAA"])
def test_token_cipher_open_damaged_value_fails(secrets, ciphertext):
    """A value that is not base64 or too short raises SecretStoreError, not another error."""
    # GIVEN a damaged sealed value
    cipher = TokenCipher(secrets, KEY_NAME)

    # WHEN it is opened THEN it is refused
    with pytest.raises(SecretStoreError):
        cipher.open(Sealed(ciphertext, "v1"), ROW)


def test_token_cipher_rotation_keeps_old_values_readable(secrets):
    """After rotation, old values open with their recorded version and new ones use v2."""
    # GIVEN a value sealed with v1, then the key rotated to v2
    cipher = TokenCipher(secrets, KEY_NAME)
    old = cipher.seal("old cache", ROW)
    secrets.set(KEY_NAME, "v2", KEY_V2)

    # WHEN the old value is opened and a new one is sealed
    opened_old = cipher.open(old, ROW)
    new = cipher.seal("new cache", ROW)

    # THEN the old one still opens, the new one records v2, and v2 is really the key used
    assert opened_old == "old cache"
    assert new.key_version == "v2"
    assert cipher.open(new, ROW) == "new cache"
    with pytest.raises(SecretStoreError):
        cipher.open(replace(new, key_version="v1"), ROW)


@pytest.mark.parametrize(
    "value",
    [
        base64.b64encode(bytes(16)).decode("ascii"),
        base64.b64encode(bytes(33)).decode("ascii"),
        "not-base64-at-all!",
    ],
    ids=["16-bytes", "33-bytes", "not-base64"],
)
def test_token_cipher_refuses_key_that_is_not_32_bytes(value):
    """A key secret that is not base64 of exactly 32 bytes is refused, naming the secret."""
    # GIVEN a secret source whose current key is unusable
    source = FakeSecrets()
    source.set(KEY_NAME, "v1", value)
    cipher = TokenCipher(source, KEY_NAME)

    # WHEN a value is sealed
    with pytest.raises(SecretStoreError) as caught:
        cipher.seal("cache", ROW)

    # THEN the error names the secret and not its value
    assert KEY_NAME in str(caught.value)
    assert value not in str(caught.value)


def test_token_cipher_open_with_a_removed_key_version_is_unreadable(secrets):
    """A value whose key version was purged or disabled after a rotation will never open."""
    # GIVEN a value sealed with v1, then the key rotated to v2 and v1 removed
    cipher = TokenCipher(secrets, KEY_NAME)
    sealed = cipher.seal("refresh-token", ROW)
    secrets.set(KEY_NAME, "v2", KEY_V2)
    secrets.remove_version(KEY_NAME, "v1")

    # WHEN it is opened THEN it is unreadable for good, while new values still seal and open
    with pytest.raises(SealedValueUnreadableError):
        cipher.open(sealed, ROW)
    assert cipher.open(cipher.seal("fresh", ROW), ROW) == "fresh"


def test_token_cipher_open_tampered_value_is_unreadable(secrets):
    """A value that fails authentication is unreadable for good, not a Key Vault failure."""
    # GIVEN a sealed value with one byte changed
    cipher = TokenCipher(secrets, KEY_NAME)
    sealed = cipher.seal("refresh-token", ROW)
    forged = replace(sealed, ciphertext=_flip_byte(sealed.ciphertext, NONCE_BYTES + 2))

    # WHEN it is opened THEN it is unreadable
    with pytest.raises(SealedValueUnreadableError):
        cipher.open(forged, ROW)


def test_token_cipher_open_without_the_key_is_not_unreadable(secrets):
    """A vault missing the whole key (deleted by mistake) is an operator fault, not the value's."""
    # GIVEN a sealed value, then the key deleted altogether
    cipher = TokenCipher(secrets, KEY_NAME)
    sealed = cipher.seal("refresh-token", ROW)
    secrets.delete(KEY_NAME)

    # WHEN it is opened THEN Key Vault's failure is raised, not an unreadable value
    with pytest.raises(SecretStoreError) as raised:
        cipher.open(sealed, ROW)
    assert not isinstance(raised.value, SealedValueUnreadableError)
