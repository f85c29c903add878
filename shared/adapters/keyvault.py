"""Key Vault adapter: reads and writes the app's secrets, cached in memory.

Key Vault throttles at a few thousand reads per ten seconds per vault, so a secret is read once
per worker process and kept for :data:`CACHE_TTL_S`; an older version (for a rotated key) is
kept for the life of the process, since versions never change.

A version that cannot be read while its secret still exists (purged, or disabled: Key Vault
answers 403 ``SecretDisabled``) raises :class:`SecretVersionUnavailableError`, so a caller can
tell a value sealed with it from a vault that is missing the whole secret.

Writing a name whose secret was deleted meets soft delete (BR-13): Key Vault answers 409
``ObjectIsDeletedButRecoverable`` while the deleted secret is kept, and ``ObjectIsBeingDeleted``
while a delete, a purge or a recovery is still in progress. :meth:`KeyVaultSecretStore.set`
recovers the deleted secret and then adds the new version, retrying with a bounded backoff. It
never purges: the token key's old versions open the token caches sealed with them.

Known limitations: other worker processes keep serving a cached current version for up to
:data:`CACHE_TTL_S` after a set, and old versions they already hold for the life of the process
(so a version disabled in Key Vault still opens there until the process recycles).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError

from shared.errors import (
    SecretStoreError,
    SecretVersionUnavailableError,
    TransientError,
    ValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from azure.keyvault.secrets import KeyVaultSecret, SecretClient

logger = logging.getLogger(__name__)

CACHE_TTL_S = 300.0
NAME_PATTERN = re.compile(r"^[a-zA-Z][0-9a-zA-Z-]{0,126}$")
"""Key Vault names: 1-127 of ``0-9 a-z A-Z -``; newer docs also require a leading letter."""
DELETED_CODES = frozenset({"ObjectIsDeletedButRecoverable", "ObjectIsBeingDeleted"})
DISABLED_CODE = "SecretDisabled"
SET_ATTEMPTS = 8
MAX_BACKOFF_S = 2.0
RECOVER_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret's value and the version it came from."""

    value: str
    version: str


class KeyVaultSecretStore:
    """Gives the current or a given version of a secret, and stores new versions."""

    def __init__(
        self, client: SecretClient, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._client = client
        self._sleep = sleep
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
            SecretVersionUnavailableError: when the secret exists but that version is gone or
                disabled.
            SecretStoreError: when the secret itself does not exist (deleted, or never set).
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

    def set(self, name: str, value: str) -> Secret:
        """Store a new current version of a secret, recovering a soft-deleted one of that name.

        Raises:
            ValidationError: when the name breaks Key Vault's naming rule.
            SecretStoreError: when the name stays blocked by a deleted secret through every
                attempt, or the deleted secret may not be recovered (the message says what to
                do).
            TransientError: when Key Vault cannot be reached.
        """
        check_name(name)
        for attempt in range(1, SET_ATTEMPTS + 1):
            blocked = self._try_set(name, value)
            if isinstance(blocked, Secret):
                self._remember(name, blocked)
                return blocked
            if attempt == SET_ATTEMPTS:
                break
            if blocked == "ObjectIsDeletedButRecoverable":
                self._recover(name)
            # Key Vault keeps refusing the name for a few seconds while a recovery completes.
            self._sleep(min(0.5 * attempt, MAX_BACKOFF_S))
        msg = (
            f"Key Vault secret {name!r} stayed deleted after {SET_ATTEMPTS} attempts; not stored. "
            "Recover it in Key Vault (az keyvault secret recover) and run the command again"
        )
        raise SecretStoreError(msg)

    def _try_set(self, name: str, value: str) -> Secret | str:
        """Set the secret; return it, or the 409 code of a deleted secret blocking the name."""
        try:
            found = self._client.set_secret(name, value)
        except HttpResponseError as error:
            code = _inner_code(error)
            if error.status_code == 409 and code in DELETED_CODES:
                logger.debug("secret name blocked by a deleted secret", extra={"code": code})
                return code
            msg = f"writing Key Vault secret {name!r} failed with {error.status_code}"
            raise _write_error(error, msg) from error
        except AzureError as error:
            msg = f"writing Key Vault secret {name!r} failed"
            raise TransientError(msg) from error
        return _secret(name, found)

    def _recover(self, name: str) -> None:
        """Start recovering a soft-deleted secret, with every version it had."""
        try:
            # The recovery runs on in Key Vault; waiting for it saves the set's next attempts.
            self._client.begin_recover_deleted_secret(name).wait(timeout=RECOVER_WAIT_S)
        except ResourceNotFoundError:
            # Recovered or purged by someone else meanwhile: the set is simply tried again.
            return
        except HttpResponseError as error:
            if error.status_code == 409:
                # Still being deleted or recovered: the next attempt looks again.
                return
            msg = (
                f"Key Vault refused to recover deleted secret {name!r} ({error.status_code}); "
                "give the app the right to recover secrets, or recover it yourself "
                "(az keyvault secret recover), then run the command again"
            )
            raise SecretStoreError(msg) from error
        except AzureError as error:
            msg = f"recovering Key Vault secret {name!r} failed"
            raise TransientError(msg) from error
        logger.info("deleted secret recovered before writing a new version")

    def _remember(self, name: str, secret: Secret) -> None:
        with self._lock:
            self._latest[name] = (time.monotonic(), secret)
            self._versions[(name, secret.version)] = secret

    def _fetch(self, name: str, version: str | None) -> Secret:
        try:
            found = self._client.get_secret(name, version)
        except ResourceNotFoundError as error:
            if version is not None and self._exists(name):
                msg = f"version {version!r} of Key Vault secret {name!r} no longer exists"
                raise SecretVersionUnavailableError(msg) from error
            msg = f"Key Vault secret {name!r} does not exist; recover it if it was deleted"
            raise SecretStoreError(msg) from error
        except HttpResponseError as error:
            if _inner_code(error) == DISABLED_CODE:
                msg = f"version {version or 'current'!r} of Key Vault secret {name!r} is disabled"
                if version is None:
                    raise SecretStoreError(msg) from error
                raise SecretVersionUnavailableError(msg) from error
            msg = f"reading Key Vault secret {name!r} failed with {error.status_code}"
            raise TransientError(msg) from error
        except AzureError as error:
            msg = f"reading Key Vault secret {name!r} failed"
            raise TransientError(msg) from error
        return _secret(name, found)

    def _exists(self, name: str) -> bool:
        """Tell whether a secret has a current version, so a missing version is its own fault.

        Key Vault is asked, not the cache: a secret deleted minutes ago must not make every
        version it had look removed one by one.
        """
        try:
            self._client.get_secret(name)
        except ResourceNotFoundError:
            return False
        except AzureError as error:
            msg = f"reading Key Vault secret {name!r} failed"
            raise TransientError(msg) from error
        return True


def check_name(name: str) -> None:
    """Refuse a secret name Key Vault would refuse.

    Raises:
        ValidationError: when the name is not a letter then up to 126 of ``0-9 a-z A-Z -``.
    """
    if NAME_PATTERN.match(name) is None:
        # The name is not echoed: names derived from user data could carry an address.
        field = "name"
        raise ValidationError(field, "must be 1-127 of 0-9, a-z, A-Z and -, starting with a letter")


def _secret(name: str, found: KeyVaultSecret) -> Secret:
    if found.value is None or found.properties.version is None:
        msg = f"Key Vault secret {name!r} has no value"
        raise SecretStoreError(msg)
    return Secret(found.value, found.properties.version)


def _inner_code(error: HttpResponseError) -> str:
    inner: Any = getattr(error.error, "innererror", None)
    if isinstance(inner, dict) and inner.get("code"):
        return str(inner["code"])
    return ""


def _write_error(error: HttpResponseError, message: str) -> SecretStoreError | TransientError:
    status = error.status_code or 0
    if status == 429 or status >= 500:
        return TransientError(message)
    return SecretStoreError(message)
