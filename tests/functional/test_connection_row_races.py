"""Races on a connection's row, on Azurite: rotated token caches (BR-07) and reauth (BR-08).

The connection row holds the sealed MSAL cache next to the chosen folders and the last round's
record. A refresh reads the row, asks MSAL, and writes the rotated cache back conditionally on
the ETag it read; these tests land another write between the read and that write. Jobs that
find the refresh token refused at once move the row to ``reauth_required`` exactly once.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, cast

import pytest
from azure.data.tables import TableServiceClient

from devstack.azurite import Azurite
from shared.adapters.tablelimits import table_key
from shared.adapters.tables import TableEntityStore
from shared.adapters.tokens import AccessToken, Grant
from shared.consent.crypto import Sealed, TokenCipher
from shared.errors import ReauthRequiredError
from shared.sync.connections import MAIL, REAUTH_REQUIRED, REVOKED, TABLE, Connection, Folder
from shared.sync.connectionstore import ConnectionStore
from tests.unit.fakes import FakeSecrets

KEY_NAME = "token-encryption-key"
OLD_CACHE = '{"RefreshToken": "rt-0"}'
NEW_CACHE = '{"RefreshToken": "rt-1"}'


class RotatingMsal:
    """Answers every token request with a rotated cache; ``during`` runs before it answers."""

    def __init__(self) -> None:
        self.during: Callable[[], object] | None = None
        self.seen: list[str] = []

    def access_token(
        self,
        cache_json: str,
        home_account_id: str,
        scopes: Sequence[str],
        *,
        force_refresh: bool = False,
    ) -> AccessToken:
        self.seen.append(cache_json)
        if self.during is not None:
            hook, self.during = self.during, None
            hook()
        return AccessToken(token="at-1", changed_cache_json=NEW_CACHE)


@pytest.fixture(scope="module")
def tables(azurite: Azurite) -> TableEntityStore:
    store = TableEntityStore(TableServiceClient.from_connection_string(azurite.connection_string))
    store.ensure_tables()
    return store


@pytest.fixture
def msal() -> RotatingMsal:
    return RotatingMsal()


@pytest.fixture
def notified() -> list[tuple[str, str]]:
    """The (user, code) of every reauth notice sent, in order."""
    return []


@pytest.fixture
def store(
    tables: TableEntityStore, msal: RotatingMsal, notified: list[tuple[str, str]]
) -> ConnectionStore:
    secrets = FakeSecrets()
    secrets.set(KEY_NAME, "v1", base64.b64encode(bytes(range(32))).decode("ascii"))
    cipher = TokenCipher(secrets, KEY_NAME)

    def notify(connection: Connection, code: str) -> None:
        notified.append((connection.user_id, code))

    return ConnectionStore(tables, cipher, cast(Any, msal), notify=notify)


def connect(store: ConnectionStore) -> Connection:
    """Store a new mail connection holding the old cache, as consent does."""
    grant = Grant(
        cache_json=OLD_CACHE,
        home_account_id="home-1",
        tenant_id=str(uuid.uuid4()),
        user_id=str(uuid.uuid4()),
        username="user@contoso.example",
    )
    return store.save_grant(grant, MAIL, ["Mail.Read"])


def stored_cache(tables: TableEntityStore, store: ConnectionStore, connection: Connection) -> str:
    """Open the cache the connection's row holds now ("" when it holds none)."""
    row = tables.get(TABLE, *connection_keys(connection))
    assert row is not None
    if not row.get("tokenCache"):
        return ""
    sealed = Sealed(str(row["tokenCache"]), str(row["tokenKeyVersion"]))
    return store.cipher.open(sealed, connection.key)


def connection_keys(connection: Connection) -> tuple[str, str]:
    """The connection row's partition and row keys."""
    return table_key(connection.tenant_id), table_key(connection.user_id, connection.kind)


def test_rotated_cache_survives_a_folder_change_during_the_refresh(tables, store, msal):
    """A user choosing folders while a worker refreshes does not cost the rotated token."""
    # GIVEN a connection whose refresh is answered only after the user changed its folders
    connection = connect(store)
    msal.during = lambda: store.set_folders(connection, [Folder("inbox-id", "Inbox")])

    # WHEN a worker gets an access token
    token = store.access_token(connection)

    # THEN the row holds the rotated cache and the new folders both
    assert token == "at-1"
    assert stored_cache(tables, store, connection) == NEW_CACHE
    current = store.get(connection.tenant_id, connection.user_id, MAIL)
    assert current is not None
    assert current.folders == (Folder("inbox-id", "Inbox"),)


def test_rotated_cache_survives_a_round_record_during_the_refresh(tables, store, msal):
    """A round record written meanwhile (another field of the row) does not cost the token."""
    # GIVEN a connection whose refresh is answered only after a round record was written
    connection = connect(store)
    msal.during = lambda: store.record_round(connection, {"seen": 3, "complete": True})

    # WHEN a worker gets an access token
    store.access_token(connection)

    # THEN the next refresh starts from the rotated cache
    assert stored_cache(tables, store, connection) == NEW_CACHE
    store.access_token(connection)
    assert msal.seen[-1] == NEW_CACHE


def test_rotated_cache_never_undoes_a_revoke_during_the_refresh(tables, store, msal):
    """A revoke landing during a refresh stays: the rotated cache is not written back."""
    # GIVEN a connection the user revokes while a worker's refresh is in flight
    connection = connect(store)
    msal.during = lambda: store.revoke(connection.tenant_id, connection.user_id, MAIL)

    # WHEN the refresh completes
    store.access_token(connection)

    # THEN the connection holds no token and stays revoked
    assert stored_cache(tables, store, connection) == ""
    current = store.get(connection.tenant_id, connection.user_id, MAIL)
    assert current is not None
    assert current.state == REVOKED
    with pytest.raises(ReauthRequiredError):
        store.access_token(connection)


def test_rotated_cache_keeps_a_newer_consent_during_the_refresh(tables, store, msal):
    """A new consent landing during a refresh keeps its own cache, not the older rotation."""
    # GIVEN a connection the user consents again for while a worker's refresh is in flight
    connection = connect(store)
    newer = '{"RefreshToken": "rt-consent"}'
    grant = Grant(
        cache_json=newer,
        home_account_id="home-1",
        tenant_id=connection.tenant_id,
        user_id=connection.user_id,
        username="user@contoso.example",
    )
    msal.during = lambda: store.save_grant(grant, MAIL, ["Mail.Read"])

    # WHEN the refresh completes
    store.access_token(connection)

    # THEN the consent's cache is what the row holds
    assert stored_cache(tables, store, connection) == newer


def test_require_consent_is_made_once_by_racing_jobs(store, notified):
    """Eight jobs finding the grant refused at once move the connection once, with one notice."""
    # GIVEN a connection and eight jobs ready to record the same refusal together
    connection = connect(store)
    start = threading.Barrier(8)
    outcomes: list[bool] = []

    def job() -> None:
        start.wait()
        outcomes.append(store.require_consent(connection, "invalid_grant:50173"))

    # WHEN they all record it
    threads = [threading.Thread(target=job) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN one made the move and sent the one notice
    assert sorted(outcomes) == [False] * 7 + [True]
    assert notified == [(connection.user_id, "invalid_grant:50173")]
    current = store.get(connection.tenant_id, connection.user_id, MAIL)
    assert current is not None
    assert (current.state, current.last_error) == (REAUTH_REQUIRED, "invalid_grant:50173")


def test_require_consent_leaves_a_revoked_connection_alone(store, notified):
    """A refusal recorded after the user revoked the connection changes nothing, tells nobody."""
    # GIVEN a revoked connection
    connection = connect(store)
    store.revoke(connection.tenant_id, connection.user_id, MAIL)

    # WHEN a job that was in flight records the refusal
    moved = store.require_consent(connection, "invalid_grant:70008")

    # THEN it stays revoked and no notice goes out
    assert moved is False
    assert notified == []
    current = store.get(connection.tenant_id, connection.user_id, MAIL)
    assert current is not None
    assert current.state == REVOKED
