"""The token key in Key Vault: a soft-deleted key is recovered, an unreadable cache asks consent.

Both tests change the stack's one token key and put it back as they found it, so the other
tests' connections keep opening their caches.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from azure.data.tables import TableServiceClient

from devstack.stack import ROOT, TOKEN_KEY_NAME, LocalStack
from shared.adapters.tablelimits import table_key
from tests.functional.conftest import Tenant
from tests.functional.test_mail_sync import message
from tests.functional.test_reauth import notices
from tests.functional.test_sync_resilience import connected, last_round, stored_ids

pytestmark = pytest.mark.stack


def rotate(stack: LocalStack) -> subprocess.CompletedProcess[str]:
    """Run the documented rotation command with the app's settings."""
    command = [sys.executable, "-m", "shared.maintenance", "rotate-token-key"]
    env = {**os.environ, **stack.env}
    return subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def sealed_with(tenant: Tenant, upn: str) -> str:
    """The key version that sealed the user's mail token cache, as stored."""
    assert tenant.stack.azurite is not None
    service = TableServiceClient.from_connection_string(tenant.stack.azurite.connection_string)
    row = service.get_table_client("connections").get_entity(
        table_key(tenant.tenant_id), table_key(tenant.users[upn], "mail")
    )
    return str(row["tokenKeyVersion"])


@pytest.fixture
def disabled_versions(stack: LocalStack) -> Iterator[list[str]]:
    """Versions of the token key a test disables; enabled again after it."""
    versions: list[str] = []
    yield versions
    for version in versions:
        stack.sim.vault_enable(TOKEN_KEY_NAME, version, enabled=True)
    stack.kill_host()


def test_rotation_after_a_soft_delete_recovers_the_key_and_sync_goes_on(tenant: Tenant) -> None:
    """Rotating a soft-deleted key brings its versions back: caches open, mail keeps syncing."""
    # GIVEN a synced mailbox, then the token key soft-deleted by mistake
    stack = tenant.stack
    upn = connected(tenant, "kim", "Acme", "acme.example")
    stack.sim.load_messages(upn, "inbox", [message("a@acme.example", [upn], "one")])
    tenant.sync()
    with stack.sim.state.lock:
        stack.sim.state.vault.delete(TOKEN_KEY_NAME, int(stack.sim.state.clock.now()))

    # WHEN the operator runs the rotation command, the host restarts, and a round runs
    done = rotate(stack)
    stack.kill_host()
    stack.sim.load_messages(upn, "inbox", [message("a@acme.example", [upn], "two")])
    tenant.sync()

    # THEN the command recovered the key and added a version, and the old cache still opened
    assert done.returncode == 0, done.stderr
    with stack.sim.state.lock:
        secret, _ = stack.sim.state.vault.get(TOKEN_KEY_NAME)
        versions = [v.version for v in secret.versions]
    assert sealed_with(tenant, upn) in versions
    assert len(versions) >= 2
    state = last_round(tenant, upn)
    assert (state["state"], state["lastError"]) == ("active", None)
    assert len(stored_ids(tenant, "Acme")) == 2


def test_cache_sealed_with_a_disabled_key_version_asks_for_consent_once(
    tenant: Tenant, disabled_versions: list[str]
) -> None:
    """A disabled key version moves the connection to reauth_required with one notice."""
    # GIVEN a synced mailbox, then the key rotated and the version that sealed its cache disabled
    stack = tenant.stack
    upn = connected(tenant, "lee", "Acme", "acme.example")
    tenant.sync()
    old = sealed_with(tenant, upn)
    stack.sim.vault_set(TOKEN_KEY_NAME, base64.b64encode(os.urandom(32)).decode("ascii"))
    stack.sim.vault_enable(TOKEN_KEY_NAME, old, enabled=False)
    disabled_versions.append(old)
    stack.kill_host()

    # WHEN two rounds run
    tenant.sync()
    tenant.sync()

    # THEN the connection waits for consent, says why, and its user was told once
    state = last_round(tenant, upn)
    assert (state["state"], state["lastError"]) == ("reauth_required", "token_cache_unreadable")
    assert state["explanation"]["code"] == "token_cache_unreadable"
    assert len(notices(tenant, upn)) == 1
