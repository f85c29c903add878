"""BR-13: Key Vault writes through the product's adapter against the simulator's vault."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from devstack.stack import ROOT, LocalStack
from shared.adapters.keyvault import KeyVaultSecretStore
from shared.consent.crypto import TokenCipher
from shared.errors import ValidationError

pytestmark = pytest.mark.stack


@pytest.fixture
def client(stack: LocalStack) -> SecretClient:
    """A SecretClient built as ``shared.wiring`` builds it, from the stack's settings."""
    env, ca = stack.env, str(stack.tls.ca_pem)
    credential = ClientSecretCredential(
        env["AZURE_TENANT_ID"],
        env["AZURE_CLIENT_ID"],
        env["AZURE_CLIENT_SECRET"],
        authority=env["AZURE_AUTHORITY_HOST"],
        disable_instance_discovery=True,
        connection_verify=ca,
    )
    return SecretClient(
        env["KEY_VAULT_URL"], credential, verify_challenge_resource=False, connection_verify=ca
    )


@pytest.fixture
def lagging_vault(stack: LocalStack) -> Iterator[None]:
    """The vault refuses a purge for 1 s after a delete and the name for 2 s after a purge."""
    stack.sim.vault_lags(delete_s=1, purge_s=2)
    yield
    stack.sim.vault_lags()


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.mark.usefixtures("lagging_vault")
def test_set_after_delete_recovers_the_secret_and_never_purges(
    stack: LocalStack, client: SecretClient
) -> None:
    """Set, soft delete, set again: the secret is recovered with its versions, then added to."""
    # GIVEN a token key with one version, then deleted by mistake (soft delete)
    store = KeyVaultSecretStore(client)
    name = _name("token-key")
    first = store.set(name, "KEY_A")
    client.begin_delete_secret(name).wait()

    # WHEN the key is written again
    written = store.set(name, "KEY_B")

    # THEN the deleted secret was recovered, never purged
    seen = [(r.method, r.path, r.status) for r in stack.sim.requests_seen() if name in r.path]
    assert ("POST", f"/deletedsecrets/{name}/recover", 200) in seen
    assert not [hit for hit in seen if hit[0] == "DELETE" and "/deletedsecrets/" in hit[1]]

    # AND the new value is current, while the old version still reads
    assert store.get(name) == written
    assert client.get_secret(name).value == "KEY_B"
    assert client.get_secret(name, first.version).value == "KEY_A"


@pytest.mark.parametrize("name", ["rt-jane.doe", "rt_conn_42"])
def test_set_refuses_a_name_with_a_dot_or_underscore(
    stack: LocalStack, client: SecretClient, name: str
) -> None:
    """A name Key Vault would refuse is refused before any request."""
    # GIVEN the vault's request count
    before = sum(1 for r in stack.sim.requests_seen() if r.service == "vault")

    # WHEN such a name is set THEN it is refused and Key Vault was not called
    with pytest.raises(ValidationError):
        KeyVaultSecretStore(client).set(name, "value")
    assert sum(1 for r in stack.sim.requests_seen() if r.service == "vault") == before


def test_rotate_token_key_keeps_old_ciphertexts_open(
    stack: LocalStack, client: SecretClient
) -> None:
    """After the maintenance command rotates the key, old values open and new ones use it."""
    # GIVEN a token key and a value sealed with it
    name = _name("token-key")
    first = KeyVaultSecretStore(client).set(name, base64.b64encode(os.urandom(32)).decode())
    sealed = TokenCipher(KeyVaultSecretStore(client), name).seal("refresh-token-A", "conn-1")

    # WHEN an operator runs the rotation command with the app's settings
    env = {**os.environ, **stack.env, "TOKEN_KEY_SECRET_NAME": name}
    command = [sys.executable, "-m", "shared.maintenance", "rotate-token-key"]
    done = _run(command, env)

    # THEN a new 32-byte version is current
    assert done.returncode == 0, done.stderr
    rotated = KeyVaultSecretStore(client).get(name)
    assert rotated.version != first.version
    assert rotated.version in done.stdout
    assert len(base64.b64decode(rotated.value)) == 32

    # AND the old value still opens, while new seals use the new version and open too
    cipher = TokenCipher(KeyVaultSecretStore(client), name)
    assert sealed.key_version == first.version
    assert cipher.open(sealed, "conn-1") == "refresh-token-A"
    fresh = cipher.seal("refresh-token-B", "conn-1")
    assert fresh.key_version == rotated.version
    assert cipher.open(fresh, "conn-1") == "refresh-token-B"


def test_rotate_token_key_reports_missing_settings() -> None:
    """Without the app's settings the command exits with 2 and names the problem."""
    env = {"PATH": os.environ.get("PATH", "")}
    command = [sys.executable, "-m", "shared.maintenance", "rotate-token-key"]
    done = _run(command, env)
    assert done.returncode == 2
    assert "settings" in done.stderr
