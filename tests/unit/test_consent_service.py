"""Unit tests for shared.consent.service's callback, with hand-written fakes."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.adapters.tablelimits import table_key
from shared.adapters.tokens import Grant
from shared.consent.crypto import TokenCipher
from shared.consent.service import STATE_ROW, STATES, ConsentService
from shared.errors import ConsentError, ThrottledError
from shared.sync.connections import ACTIVE, MAIL, Connection, Folder
from tests.unit.fakes import FakeSecrets, FakeTables

KEY_NAME = "token-encryption-key"
TENANT, USER, STATE = "tenant-1", "user-1", "state-1"


def _key(seed: int) -> str:
    return base64.b64encode(bytes((seed + i) % 256 for i in range(32))).decode("ascii")


@dataclass
class Connections:
    """ConnectionStore stand-in: stores the grant as a connection without folders."""

    cipher: TokenCipher
    saved: list[Connection] = field(default_factory=list)

    def save_grant(self, grant: Grant, kind: str, scopes: Any) -> Connection:
        connection = Connection(
            tenant_id=grant.tenant_id,
            user_id=grant.user_id,
            kind=kind,
            state=ACTIVE,
            upn=grant.username,
            folders=(),
            home_account_id=grant.home_account_id,
            scopes=tuple(scopes),
        )
        self.saved.append(connection)
        return connection

    def access_token(self, connection: Connection, *, force_refresh: bool = False) -> str:
        return "access-token"

    def set_folders(self, connection: Connection, folders: list[Folder]) -> Connection:
        raise AssertionError("no folders were looked up")


class Msal:
    """MsalTokenClient stand-in: the flow completes for the user who started it."""

    def complete_flow(self, flow: dict[str, Any], params: dict[str, str]) -> Grant:
        return Grant("{}", "home-1", TENANT, USER, "user@vendor.example")


class BusyGraph:
    """GraphMailClient stand-in that keeps throttling the folder lookup."""

    def get_folder(self, token: str, folder: str) -> dict[str, Any]:
        raise ThrottledError("Graph answered 503 after 4 attempts", retry_after_s=5)


@pytest.fixture
def secrets() -> FakeSecrets:
    source = FakeSecrets()
    source.set(KEY_NAME, "v1", _key(1))
    return source


def _service(secrets: FakeSecrets) -> tuple[ConsentService, Connections]:
    """A service with one consent started: its flow sealed with the current key version."""
    tables, cipher = FakeTables(), TokenCipher(secrets, KEY_NAME)
    sealed = cipher.seal(json.dumps({"state": STATE}), STATE)
    expires = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    row = {"PartitionKey": table_key(STATE), "RowKey": STATE_ROW, "tenantId": TENANT}
    row |= {"userId": USER, "kind": MAIL, "flow": sealed.ciphertext}
    tables.create(STATES, {**row, "keyVersion": sealed.key_version, "expiresAt": expires})
    connections = Connections(cipher)
    service = ConsentService(
        tables=tables,  # type: ignore[arg-type]
        connections=connections,  # type: ignore[arg-type]
        msal=Msal(),  # type: ignore[arg-type]
        graph=BusyGraph(),  # type: ignore[arg-type]
        directory=None,  # type: ignore[arg-type]
        redirect_uri="https://app.example/callback",
        features=None,  # type: ignore[arg-type]
    )
    return service, connections


def test_complete_keeps_the_grant_when_the_folder_lookup_fails(secrets):
    """A throttled folder lookup leaves the consent complete, its folders for the first job."""
    # GIVEN a started consent, and Graph throttling the folder lookup
    service, connections = _service(secrets)

    # WHEN the callback arrives
    connection = service.complete({"state": STATE, "code": "code-1"})

    # THEN the grant is stored and the callback succeeds, without folders yet
    assert connections.saved == [connection]
    assert connection.folders == ()


def test_complete_with_a_flow_whose_key_version_is_gone_is_a_dead_link(secrets):
    """A consent flow sealed with a key version removed since is refused as a state problem."""
    # GIVEN a started consent, then the key rotated and the version that sealed it removed
    service, connections = _service(secrets)
    secrets.set(KEY_NAME, "v2", _key(2))
    secrets.remove_version(KEY_NAME, "v1")

    # WHEN the callback arrives THEN it is refused naming the state, and nothing is stored
    with pytest.raises(ConsentError) as raised:
        service.complete({"state": STATE, "code": "code-1"})
    assert (raised.value.code, raised.value.field) == ("unreadable_state", "state")
    assert connections.saved == []
