"""Secrets of the simulated Key Vault: versions, soft delete, purge and recover.

Like Key Vault, the store can lag (BR-13): for ``delete_lag_s`` after a delete, purging answers
409 ``ObjectIsBeingDeleted``; for ``purge_lag_s`` after a purge, setting the name still answers
409 ``ObjectIsBeingDeleted`` although the deleted secret can no longer be read. Both are 0 unless
a test sets them.

Reading a disabled version answers 403 ``Forbidden`` with inner code ``SecretDisabled``, as Key
Vault does; a version is disabled or enabled again through the simulator's control helper.

Known limitations: soft-deleted secrets are never purged by the passage of time, there is no
purge protection switch, and updating a version's attributes over REST (PATCH) is not supported.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field, replace

NAME_PATTERN = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
RECOVERABLE_DAYS = 90


class VaultError(Exception):
    """Raised for a request Key Vault refuses; carries the status and codes it answers with."""

    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner


@dataclass(frozen=True, slots=True)
class SecretVersion:
    """One version of a secret."""

    version: str
    value: str
    content_type: str | None
    tags: dict[str, str]
    created: int
    enabled: bool = True


@dataclass(slots=True)
class Secret:
    """A secret name and its versions, newest last."""

    name: str
    versions: list[SecretVersion] = field(default_factory=list)
    deleted: int | None = None

    @property
    def latest(self) -> SecretVersion:
        """Return the newest version."""
        return self.versions[-1]


def check_name(name: str) -> None:
    """Refuse names Key Vault refuses.

    Raises:
        VaultError: ``name`` is not 1-127 characters of ``0-9 a-z A-Z -``.
    """
    if NAME_PATTERN.match(name) is None:
        message = (
            f"The request URI contains an invalid name: {name}. Secret names must be 1-127"
            " characters of 0-9, a-z, A-Z and -."
        )
        raise VaultError(400, "BadParameter", message)


def _not_found(name: str, *, deleted: bool = False) -> VaultError:
    what = "Deleted Secret" if deleted else "Secret"
    message = f"A {what} with (name/id) {name} was not found in this key vault."
    return VaultError(404, "SecretNotFound", message)


def _being_deleted(name: str, what: str) -> VaultError:
    message = f"Secret {name} is currently being deleted and cannot be {what}."
    return VaultError(409, "Conflict", message, "ObjectIsBeingDeleted")


class VaultStore:
    """Live and soft-deleted secrets by lower-cased name; the caller holds the lock."""

    def __init__(self) -> None:
        self._live: dict[str, Secret] = {}
        self._deleted: dict[str, Secret] = {}
        self._purged_until: dict[str, float] = {}
        self.delete_lag_s = 0.0
        self.purge_lag_s = 0.0

    def set(
        self,
        name: str,
        value: str,
        now: int,
        *,
        content_type: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> tuple[Secret, SecretVersion]:
        """Add a new version of ``name`` (creating the secret) and return it."""
        check_name(name)
        key = name.lower()
        if self._purged_until.get(key, 0.0) > now or self._being_deleted(key, now):
            raise _being_deleted(name, "re-created; retry later")
        if key in self._deleted:
            message = f"Secret {name} is currently in a deleted but recoverable state, and its"
            message += " name cannot be reused; in this state, the secret can only be recovered"
            message += " or purged."
            raise VaultError(409, "Conflict", message, "ObjectIsDeletedButRecoverable")
        secret = self._live.setdefault(key, Secret(name))
        version = SecretVersion(secrets.token_hex(16), value, content_type, dict(tags or {}), now)
        secret.versions.append(version)
        return secret, version

    def get(self, name: str, version: str | None = None) -> tuple[Secret, SecretVersion]:
        """Return a version of a live secret (the newest when ``version`` is empty)."""
        check_name(name)
        secret = self._live.get(name.lower())
        if secret is None:
            raise _not_found(name)
        if not version:
            return secret, secret.latest
        found = next((v for v in secret.versions if v.version == version), None)
        if found is None:
            raise _not_found(name + "/" + version)
        if not found.enabled:
            message = "Operation get is not allowed on a disabled secret."
            raise VaultError(403, "Forbidden", message, "SecretDisabled")
        return secret, found

    def enable(self, name: str, version: str, *, enabled: bool) -> None:
        """Enable or disable one version of a live secret."""
        secret = self.get(name)[0]
        found = next((v for v in secret.versions if v.version == version), None)
        if found is None:
            raise _not_found(name + "/" + version)
        secret.versions[secret.versions.index(found)] = replace(found, enabled=enabled)

    def live(self) -> list[Secret]:
        """Return every live secret."""
        return list(self._live.values())

    def deleted(self) -> list[Secret]:
        """Return every soft-deleted secret."""
        return list(self._deleted.values())

    def delete(self, name: str, now: int) -> Secret:
        """Soft-delete a secret and return it."""
        check_name(name)
        secret = self._live.pop(name.lower(), None)
        if secret is None:
            raise _not_found(name)
        secret.deleted = now
        self._deleted[name.lower()] = secret
        return secret

    def get_deleted(self, name: str) -> Secret:
        """Return a soft-deleted secret."""
        check_name(name)
        secret = self._deleted.get(name.lower())
        if secret is None:
            raise _not_found(name, deleted=True)
        return secret

    def purge(self, name: str, now: float = 0.0) -> None:
        """Remove a soft-deleted secret for good; its name stays blocked for ``purge_lag_s``."""
        self.get_deleted(name)
        if self._being_deleted(name.lower(), now):
            raise _being_deleted(name, "purged; retry later")
        del self._deleted[name.lower()]
        if self.purge_lag_s:
            self._purged_until[name.lower()] = now + self.purge_lag_s

    def _being_deleted(self, key: str, now: float) -> bool:
        secret = self._deleted.get(key)
        if secret is None or not self.delete_lag_s:
            return False
        return (secret.deleted or 0) + self.delete_lag_s > now

    def recover(self, name: str) -> Secret:
        """Bring a soft-deleted secret back and return it."""
        secret = self.get_deleted(name)
        del self._deleted[name.lower()]
        secret.deleted = None
        self._live[name.lower()] = secret
        return secret
