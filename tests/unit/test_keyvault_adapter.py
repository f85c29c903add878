"""Unit tests for KeyVaultSecretStore with a hand-written SecretClient fake."""

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
    RECOVER_WAIT_S,
    SET_ATTEMPTS,
    KeyVaultSecretStore,
    check_name,
)
from shared.errors import (
    SecretStoreError,
    SecretVersionUnavailableError,
    TransientError,
    ValidationError,
)


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
class _Poller:
    """The poller ``begin_recover_deleted_secret`` returns; waiting is instant here."""

    waits: list[float | None]

    def wait(self, timeout: float | None = None) -> None:
        self.waits.append(timeout)


@dataclass
class FakeSecretClient:
    """SecretClient stand-in: ``set_secret`` answers from a script, then stores."""

    set_script: list[Exception] = field(default_factory=list)
    recover_script: list[Exception | None] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    versions: dict[str, list[str]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    disabled: set[str] = field(default_factory=set)
    waits: list[float | None] = field(default_factory=list)

    def set_secret(self, name: str, value: str) -> _Stored:
        self.calls.append("set")
        if self.set_script:
            raise self.set_script.pop(0)
        self.versions.setdefault(name, []).append(value)
        return _Stored(value, _Properties(f"v{len(self.versions[name])}"))

    def purge_deleted_secret(self, name: str) -> None:
        raise AssertionError("the store must never purge a deleted secret")

    def begin_recover_deleted_secret(self, name: str) -> _Poller:
        self.calls.append("recover")
        answer = self.recover_script.pop(0) if self.recover_script else None
        if answer is not None:
            raise answer
        return _Poller(self.waits)

    def get_secret(self, name: str, version: str | None = None) -> _Stored:
        self.calls.append("get")
        values = self.versions.get(name)
        if not values:
            raise ResourceNotFoundError("no such secret")
        version = version or f"v{len(values)}"
        if version in self.gone or not 0 < int(version[1:]) <= len(values):
            raise ResourceNotFoundError("no such version")
        if version in self.disabled:
            raise HttpResponseError(response=_Response(403, "Forbidden", "SecretDisabled"))
        return _Stored(values[int(version[1:]) - 1], _Properties(version))


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


def test_set_on_a_deleted_name_recovers_then_retries_with_backoff():
    """A 409 deleted-but-recoverable recovers the secret (never purges) and then stores."""
    # GIVEN a name soft-deleted, and Key Vault still refusing it twice while it recovers
    client = FakeSecretClient(
        set_script=[_conflict(DELETED), _conflict(BEING_DELETED), _conflict(BEING_DELETED)]
    )
    store, sleeps = _store(client)

    # WHEN the secret is set
    written = store.set("rt-conn-42", "RT_B")

    # THEN it was recovered once (waiting for the recovery), retried with growing waits, stored
    assert written.value == "RT_B"
    assert client.calls == ["set", "recover", "set", "set", "set"]
    assert client.waits == [RECOVER_WAIT_S]
    assert sleeps == [0.5, 1.0, 1.5]


def test_set_recovers_again_when_a_delete_was_still_in_progress():
    """A recovery refused with 409 (delete still running) is tried again on the next attempt."""
    # GIVEN a recovery that first finds the delete still in progress
    client = FakeSecretClient(
        set_script=[_conflict(DELETED), _conflict(DELETED)],
        recover_script=[_conflict(BEING_DELETED), None],
    )
    store, _ = _store(client)

    # WHEN the secret is set
    written = store.set("rt-conn-42", "RT_B")

    # THEN it recovered twice and succeeded
    assert written.value == "RT_B"
    assert client.calls == ["set", "recover", "set", "recover", "set"]


def test_set_goes_on_when_the_deleted_secret_is_already_back():
    """A recovery answering 404 (another writer recovered it) goes on to retry the set."""
    # GIVEN a recovery that finds nothing left to recover
    client = FakeSecretClient(
        set_script=[_conflict(DELETED)], recover_script=[ResourceNotFoundError("gone")]
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
    with pytest.raises(SecretStoreError, match=r"stayed deleted.*az keyvault secret recover"):
        store.set("rt-conn-42", "RT_B")
    assert client.calls.count("set") == SET_ATTEMPTS
    assert len(sleeps) == SET_ATTEMPTS - 1
    assert max(sleeps) == MAX_BACKOFF_S


def test_set_raises_naming_what_to_do_when_recovery_is_forbidden():
    """A recovery Key Vault forbids fails the set with what to do; it never purges instead."""
    # GIVEN a vault that refuses the recovery
    client = FakeSecretClient(set_script=[_conflict(DELETED)], recover_script=[_http(403)])
    store, _ = _store(client)

    # WHEN the secret is set THEN it fails naming the recovery and the command to run
    with pytest.raises(SecretStoreError, match="recover"):
        store.set("rt-conn-42", "RT_B")
    assert client.calls == ["set", "recover"]


def test_set_other_conflict_is_not_retried():
    """A 409 for another reason (a recovery in progress) fails at once."""
    # GIVEN a secret being recovered
    client = FakeSecretClient(set_script=[_conflict("ObjectIsBeingRecovered")])
    store, _ = _store(client)

    # WHEN the secret is set THEN it fails without recovering
    with pytest.raises(SecretStoreError):
        store.set("rt-conn-42", "RT_B")
    assert client.calls == ["set"]


@pytest.mark.parametrize(("gone", "disabled"), [({"v1"}, set()), (set(), {"v1"})])
def test_get_version_of_a_removed_or_disabled_version_is_unavailable(gone, disabled):
    """A version purged or disabled while its secret exists raises the version's own error."""
    # GIVEN a key rotated once, whose first version is then removed or disabled
    client = FakeSecretClient(versions={"token-key": ["K1", "K2"]}, gone=gone, disabled=disabled)
    store, _ = _store(client)

    # WHEN the first version is read THEN it is unavailable, while the current one reads
    with pytest.raises(SecretVersionUnavailableError):
        store.get_version("token-key", "v1")
    assert store.get_version("token-key", "v2").value == "K2"


def test_get_version_of_a_missing_secret_is_not_a_version_fault():
    """When the whole secret is missing (deleted by mistake), no single version is blamed."""
    # GIVEN a vault without the key at all
    store, _ = _store(FakeSecretClient())

    # WHEN a version is read THEN it is a store error, not an unavailable version
    with pytest.raises(SecretStoreError, match="recover it") as raised:
        store.get_version("token-key", "v1")
    assert not isinstance(raised.value, SecretVersionUnavailableError)


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


def test_get_version_after_the_secret_was_deleted_is_not_a_version_fault():
    """A key deleted after it was cached still does not make its versions look removed."""
    # GIVEN a key read once (so cached), then deleted in Key Vault
    client = FakeSecretClient(versions={"token-key": ["K1", "K2"]})
    store, _ = _store(client)
    store.get("token-key")
    del client.versions["token-key"]

    # WHEN an old version is read THEN the missing secret is reported, not a removed version
    with pytest.raises(SecretStoreError) as raised:
        store.get_version("token-key", "v1")
    assert not isinstance(raised.value, SecretVersionUnavailableError)
