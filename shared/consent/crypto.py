"""Encrypt refresh-token caches and consent flows at rest with AES-GCM.

The key is a Key Vault secret holding 32 random bytes in base64. Each sealed value records the
secret version that sealed it, so the key can rotate: new writes use the current version and
older values still open with theirs. The associated data binds a ciphertext to its row, so a
sealed value copied onto another connection does not open.

A value that will never open (its key version was purged or disabled in Key Vault, or the
ciphertext is damaged or belongs to another row) raises :class:`SealedValueUnreadableError`,
apart from a Key Vault that is unreachable or lacks the key altogether, which a retry or the
operator can still fix.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import (
    SealedValueUnreadableError,
    SecretStoreError,
    SecretVersionUnavailableError,
)

if TYPE_CHECKING:
    from shared.adapters.keyvault import Secret

NONCE_BYTES = 12


class SecretSource(Protocol):
    """Where the key comes from: the Key Vault adapter, or a fake in unit tests."""

    def get(self, name: str) -> Secret:
        """Return the current version of a secret."""
        ...

    def get_version(self, name: str, version: str) -> Secret:
        """Return one version of a secret."""
        ...


@dataclass(frozen=True, slots=True)
class Sealed:
    """A ciphertext (nonce first, base64) and the key version that sealed it."""

    ciphertext: str
    key_version: str


class TokenCipher:
    """Seals and opens text with the current or a recorded key version."""

    def __init__(self, secrets: SecretSource, key_name: str) -> None:
        self._secrets = secrets
        self._key_name = key_name

    def seal(self, plaintext: str, associated: str) -> Sealed:
        """Encrypt text bound to ``associated`` (for example the connection's key)."""
        secret = self._secrets.get(self._key_name)
        nonce = os.urandom(NONCE_BYTES)
        body = AESGCM(_key_bytes(secret, self._key_name)).encrypt(
            nonce, plaintext.encode("utf-8"), associated.encode("utf-8")
        )
        return Sealed(base64.b64encode(nonce + body).decode("ascii"), secret.version)

    def open(self, sealed: Sealed, associated: str) -> str:
        """Decrypt a sealed value.

        Raises:
            SealedValueUnreadableError: when the value was not sealed for ``associated``, is
                damaged, or its key version is gone or disabled.
            SecretStoreError: when Key Vault lacks the key altogether or it is malformed.
            TransientError: when Key Vault cannot be reached.
        """
        try:
            secret = self._secrets.get_version(self._key_name, sealed.key_version)
        except SecretVersionUnavailableError as error:
            msg = f"the key version that sealed this value is gone or disabled ({error})"
            raise SealedValueUnreadableError(msg) from error
        try:
            raw = base64.b64decode(sealed.ciphertext, validate=True)
            plain = AESGCM(_key_bytes(secret, self._key_name)).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], associated.encode("utf-8")
            )
        except (InvalidTag, binascii.Error, ValueError) as error:
            msg = "sealed value does not open with its recorded key"
            raise SealedValueUnreadableError(msg) from error
        return plain.decode("utf-8")


def _key_bytes(secret: Secret, name: str) -> bytes:
    try:
        key = base64.b64decode(secret.value, validate=True)
    except binascii.Error as error:
        msg = f"Key Vault secret {name!r} is not base64"
        raise SecretStoreError(msg) from error
    if len(key) != 32:
        msg = f"Key Vault secret {name!r} must hold 32 bytes for AES-256"
        raise SecretStoreError(msg)
    return key
