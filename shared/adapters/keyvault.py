"""Key Vault adapter: reads the app's secrets, cached in memory.

Key Vault throttles at a few thousand reads per ten seconds per vault, so a secret is read once
per worker process and kept for :data:`CACHE_TTL_S`; an older version (for a rotated key) is
kept for the life of the process, since versions never change.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.errors import SecretStoreError, TransientError

if TYPE_CHECKING:
    from azure.keyvault.secrets import SecretClient

CACHE_TTL_S = 300.0


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret's value and the version it came from."""

    value: str
    version: str


class KeyVaultSecretStore:
    """Gives the current or a given version of a secret."""

    def __init__(self, client: SecretClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[float, Secret]] = {}
        self._versions: dict[tuple[str, str], Secret] = {}

    def get(self, name: str) -> Secret:
        """Return the current version of a secret.

        Raises:
            SecretStoreError: when the secret does not exist.
            TransientError: when Key Vault cannot be reached.
        """
        with self._lock:
            cached = self._latest.get(name)
        if cached and time.monotonic() - cached[0] < CACHE_TTL_S:
            return cached[1]
        secret = self._fetch(name, None)
        with self._lock:
            self._latest[name] = (time.monotonic(), secret)
            self._versions[(name, secret.version)] = secret
        return secret

    def get_version(self, name: str, version: str) -> Secret:
        """Return one version of a secret.

        Raises:
            SecretStoreError: when that version does not exist.
            TransientError: when Key Vault cannot be reached.
        """
        with self._lock:
            cached = self._versions.get((name, version))
        if cached:
            return cached
        secret = self._fetch(name, version)
        with self._lock:
            self._versions[(name, version)] = secret
        return secret

    def _fetch(self, name: str, version: str | None) -> Secret:
        try:
            found = self._client.get_secret(name, version)
        except ResourceNotFoundError as error:
            msg = f"Key Vault secret {name!r} does not exist"
            raise SecretStoreError(msg) from error
        except AzureError as error:
            msg = f"reading Key Vault secret {name!r} failed"
            raise TransientError(msg) from error
        if found.value is None or found.properties.version is None:
            msg = f"Key Vault secret {name!r} has no value"
            raise SecretStoreError(msg)
        return Secret(found.value, found.properties.version)
