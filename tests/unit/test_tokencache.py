"""Unit tests for shared.sync.tokencache through the connection store, with fakes."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import pytest

from shared.adapters.tokens import AccessToken, Grant
from shared.consent.crypto import TokenCipher
from shared.errors import ReauthRequiredError, SecretStoreError, TransientError
from shared.sync.connections import MAIL, REAUTH_REQUIRED, Connection
from shared.sync.connectionstore import ConnectionStore
from tests.unit.fakes import FakeSecrets, FakeTables

KEY_NAME = "token-encryption-key"
TENANT, USER = "tenant-1", "user-1"


@dataclass
class FakeMsal:
    """MsalTokenClient stand-in: gives a token for any cache it is handed."""

    caches: list[str] = field(default_factory=list)

    def access_token(self, cache_json: str, *_: Any, **__: Any) -> AccessToken:
        self.caches.append(cache_json)
        return AccessToken("access-token", None)


@dataclass
class World:
    secrets: FakeSecrets
    msal: FakeMsal
    notices: list[str]
    store: ConnectionStore
    connection: Connection


def _key(seed: int) -> str:
    return base64.b64encode(bytes((seed + i) % 256 for i in range(32))).decode("ascii")


@pytest.fixture
def world() -> World:
    """A connection whose token cache was sealed with version v1 of the key."""
    secrets, msal, notices = FakeSecrets(), FakeMsal(), []
    secrets.set(KEY_NAME, "v1", _key(1))
    store = ConnectionStore(
        FakeTables(),  # type: ignore[arg-type]
        TokenCipher(secrets, KEY_NAME),
        msal,  # type: ignore[arg-type]
        notify=lambda connection, code: notices.append(code),
    )
    grant = Grant('{"cache": 1}', "home-1", TENANT, USER, "user@vendor.example")
    connection = store.save_grant(grant, MAIL, ("Mail.Read",))
    return World(secrets, msal, notices, store, connection)


def test_access_token_opens_a_cache_sealed_before_a_rotation(world):
    """After the key rotates, a cache sealed with the old version still gives a token."""
    # GIVEN the key rotated to v2
    world.secrets.set(KEY_NAME, "v2", _key(2))

    # WHEN a token is asked for THEN the old cache opened
    assert world.store.access_token(world.connection) == "access-token"
    assert world.msal.caches == ['{"cache": 1}']


def test_access_token_with_a_removed_key_version_asks_for_consent_once(world):
    """A cache whose key version is gone moves the connection to reauth_required, one notice."""
    # GIVEN the key rotated and the version that sealed the cache removed (purged or disabled)
    world.secrets.set(KEY_NAME, "v2", _key(2))
    world.secrets.remove_version(KEY_NAME, "v1")

    # WHEN two jobs ask for a token and record what they got, as the sync runner does
    for _ in range(2):
        with pytest.raises(ReauthRequiredError) as raised:
            world.store.access_token(world.connection)
        world.store.record_error(world.connection, raised.value.code, state=REAUTH_REQUIRED)

    # THEN the connection waits for consent with a readable code, and the user got one notice
    assert raised.value.code == "token_cache_unreadable"
    stored = world.store.get(TENANT, USER, MAIL)
    assert stored is not None
    assert (stored.state, stored.last_error) == (REAUTH_REQUIRED, "token_cache_unreadable")
    assert world.notices == ["token_cache_unreadable"]
    assert world.msal.caches == []


def test_access_token_with_the_whole_key_missing_fails_the_job(world):
    """A vault missing the key altogether fails the job; users are not asked to consent again."""
    # GIVEN the key deleted from the vault by mistake
    world.secrets.delete(KEY_NAME)

    # WHEN a token is asked for THEN Key Vault's failure is raised as such
    with pytest.raises(SecretStoreError):
        world.store.access_token(world.connection)
    assert world.notices == []


def test_access_token_when_key_vault_is_unreachable_only_retries(world):
    """An unreachable Key Vault raises a transient error and leaves the connection as it was."""

    # GIVEN a vault that cannot be reached
    def unreachable(name: str, version: str) -> Any:
        raise TransientError("reading Key Vault secret failed")

    world.secrets.get_version = unreachable  # type: ignore[method-assign]

    # WHEN a token is asked for THEN it is transient, and the connection stays active
    with pytest.raises(TransientError):
        world.store.access_token(world.connection)
    stored = world.store.get(TENANT, USER, MAIL)
    assert stored is not None
    assert stored.state == "active"
