"""Unit tests for KeyVaultSecretStore.set with a hand-written SecretClient fake."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from shared.adapters.keyvault import (
    MAX_BACKOFF_S,
    SET_ATTEMPTS,
    KeyVaultSecretStore,
    check_name,
)
from shared.errors import SecretStoreError, TransientError, ValidationError


class _Response:
    """The part of an azure-core HTTP response that HttpResponseError reads."""

    def __init__(self, status: int, code: str, inner: str | None) -> None:
        self.status_code = status
        self.reason = code
        self.headers: dict[str, str] = {}
        error: dict[str, Any] = {"code": code, "message": f"{code} for the test"}
        if inner:
            error["innererror"] = {"code": inner}
        self._text = json.dumps({"error": error})

    def text(self, encoding: str | None = None) -> str:
        return self._text

    def body(self) -> bytes:
        return self._text.encode("utf-8")


def _conflict(inner: str) -> ResourceExistsError:
    return ResourceExistsError(response=_Response(409, "Conflict", inner))


def _http(status: int, code: str = "Forbidden") -> HttpResponseError:
    return HttpResponseError(response=_Response(status, code, None))


DELETED = "ObjectIsDeletedButRecoverable"
BEING_DELETED = "ObjectIsBeingDeleted"


@dataclass
class _Properties:
    version: str


@dataclass
class _Stored:
    value: str
    properties: _Properties


@dataclass
class FakeSecretClient:
    """SecretClient stand-in: ``set_secret`` answers from a script, then stores."""

    set_script: list[Exception] = field(default_factory=list)
    purge_script: list[Exception | None] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    versions: dict[str, list[str]] = field(default_factory=dict)

    def set_secret(self, name: str, value: str) -> _Stored:
        self.calls.append("set")
        if self.set_script:
            raise self.set_script.pop(0)
        self.versions.setdefault(name, []).append(value)
        return _Stored(value, _Properties(f"v{len(self.versions[name])}"))

    def purge_deleted_secret(self, name: str) -> None:
        self.calls.append("purge")
        answer = self.purge_script.pop(0) if self.purge_script else None
        if answer is not None:
            raise answer

    def get_secret(self, name: str, version: str | None = None) -> _Stored:
        self.calls.append("get")
        values = self.versions[name]
        return _Stored(values[-1], _Properties(f"v{len(values)}"))

    def recover_deleted_secret(self, name: str) -> None:
        raise AssertionError("the store must never recover a deleted secret")


def _store(client: FakeSecretClient) -> tuple[KeyVaultSecretStore, list[float]]:
    sleeps: list[float] = []
    return KeyVaultSecretStore(client, sleep=sleeps.append), sleeps  # type: ignore[arg-type]


def test_set_stores_and_the_cache_serves_the_new_version():
    """A plain set returns the new version, and get serves it without asking Key Vault."""
    # GIVEN a vault holding a secret, already read once
    client = FakeSecretClient()
    store, _ = _store(client)
    store.set("rt-conn-42", "RT_A")

    # WHEN a new value is set
    written = store.set("rt-conn-42", "RT_B")

    # THEN get returns it from the cache
    assert (written.value, written.version) == ("RT_B", "v2")
    assert store.get("rt-conn-42") == written
    assert "get" not in client.calls


def test_set_on_a_deleted_name_purges_then_retries_with_backoff():
    """A 409 deleted-but-recoverable purges the secret; 409s after the purge are waited out."""
    # GIVEN a name soft-deleted, and Key Vault still refusing it twice after the purge
    client = FakeSecretClient(
        set_script=[_conflict(DELETED), _conflict(BEING_DELETED), _conflict(BEING_DELETED)]
    )
    store, sleeps = _store(client)

    # WHEN the secret is set
    written = store.set("rt-conn-42", "RT_B")

    # THEN it was purged once, retried with growing waits, and stored
    assert written.value == "RT_B"
    assert client.calls == ["set", "purge", "set", "set", "set"]
    assert sleeps == [0.5, 1.0, 1.5]


def test_set_purges_again_when_a_delete_was_still_in_progress():
    """A purge refused with 409 (delete still running) is tried again on the next attempt."""
    # GIVEN a purge that first finds the delete still in progress
    client = FakeSecretClient(
        set_script=[_conflict(DELETED), _conflict(DELETED)],
        purge_script=[_conflict(BEING_DELETED), None],
    )
    store, _ = _store(client)

    # WHEN the secret is set
    written = store.set("rt-conn-42", "RT_B")

    # THEN it purged twice and succeeded
    assert written.value == "RT_B"
    assert client.calls == ["set", "purge", "set", "purge", "set"]


def test_set_treats_an_already_purged_secret_as_purged():
    """A purge answering 404 (another writer purged it) goes on to retry the set."""
    # GIVEN a purge that finds nothing left to purge
    client = FakeSecretClient(
        set_script=[_conflict(DELETED)], purge_script=[ResourceNotFoundError("gone")]
    )
    store, _ = _store(client)

    # WHEN the secret is set THEN it is stored
    assert store.set("rt-conn-42", "RT_B").value == "RT_B"


def test_set_raises_when_the_conflict_never_clears():
    """A name blocked through every attempt raises SecretStoreError; nothing reports success."""
    # GIVEN a name that stays blocked
    client = FakeSecretClient(set_script=[_conflict(BEING_DELETED)] * SET_ATTEMPTS)
    store, sleeps = _store(client)

    # WHEN the secret is set THEN it fails after a bounded number of attempts and waits
    with pytest.raises(SecretStoreError, match="stayed deleted"):
        store.set("rt-conn-42", "RT_B")
    assert client.calls.count("set") == SET_ATTEMPTS
    assert len(sleeps) == SET_ATTEMPTS - 1
    assert max(sleeps) == MAX_BACKOFF_S


def test_set_raises_when_purge_is_forbidden():
    """A purge Key Vault forbids (purge protection, no right) fails the set; it never recovers."""
    # GIVEN a vault that refuses the purge
    client = FakeSecretClient(set_script=[_conflict(DELETED)], purge_script=[_http(403)])
    store, _ = _store(client)

    # WHEN the secret is set THEN it fails naming the purge
    with pytest.raises(SecretStoreError, match="purge"):
        store.set("rt-conn-42", "RT_B")


def test_set_other_conflict_is_not_retried():
    """A 409 for another reason (a recovery in progress) fails at once."""
    # GIVEN a secret being recovered
    client = FakeSecretClient(set_script=[_conflict("ObjectIsBeingRecovered")])
    store, _ = _store(client)

    # WHEN the secret is set THEN it fails without purging
    with pytest.raises(SecretStoreError):
        store.set("rt-conn-42", "RT_B")
    assert client.calls == ["set"]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ServiceRequestError("unreachable"), TransientError),
        (_http(503, "ServiceUnavailable"), TransientError),
        (_http(429, "Throttled"), TransientError),
        (_http(403), SecretStoreError),
    ],
)
def test_set_translates_other_failures(error, expected):
    """Unreachable or throttled vaults are transient; a refusal is a secret store error."""
    # GIVEN a vault failing the write
    store, _ = _store(FakeSecretClient(set_script=[error]))

    # WHEN the secret is set THEN our own error type is raised
    with pytest.raises(expected):
        store.set("rt-conn-42", "RT_B")


@pytest.mark.parametrize(
    "name",
    ["rt-jane.doe", "rt_conn", "rt/conn", "", "7-starts-with-digit", "a" * 128, "-dash-first"],
)
def test_check_name_refuses_what_key_vault_refuses(name):
    """Dots, underscores, slashes, empty, a leading non-letter and 128 characters are refused."""
    with pytest.raises(ValidationError):
        check_name(name)


@pytest.mark.parametrize("name", ["a", "token-encryption-key", "rt-" + "0" * 124, "A-9"])
def test_check_name_accepts_valid_names(name):
    """Names of letters, digits and dashes starting with a letter, up to 127, are accepted."""
    check_name(name)


def test_set_refuses_an_invalid_name_before_calling_key_vault():
    """An invalid name raises ValidationError without a request."""
    # GIVEN a store
    client = FakeSecretClient()
    store, _ = _store(client)

    # WHEN a name derived from an address is set THEN it is refused locally
    with pytest.raises(ValidationError):
        store.set("rt-jane.doe@customer.example", "RT")
    assert client.calls == []
