"""Functional tests of the simulator's Key Vault, driven with the real azure-keyvault-secrets."""

from __future__ import annotations

import uuid

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from devstack.simulator import Simulator, VaultError
from devstack.tls import create_tls_material


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return create_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def sim(tls):
    simulator = Simulator(tls, api_audience="api://outlook-sync-tests")
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def client(sim, tls):
    """A SecretClient authenticating as a registered app through the simulator's Entra."""
    # azure-core passes connection_verify to requests per call, so no environment is needed.
    ca = str(tls.ca_pem)
    client_id = str(uuid.uuid4())
    sim.register_app(client_id, "vault-app-secret")
    credential = ClientSecretCredential(
        sim.vault_tenant_id,
        client_id,
        "vault-app-secret",
        authority=sim.authority_host,
        disable_instance_discovery=True,
        connection_verify=ca,
    )
    return SecretClient(
        sim.vault_url, credential, verify_challenge_resource=False, connection_verify=ca
    )


def test_secret_client_lifecycle_with_soft_delete(sim, client):
    """Set, get, versions, delete, conflicting set, purge and set again behave like Key Vault."""
    # GIVEN a secret with two versions
    first = client.set_secret("token-cache-abc", "v1")
    second = client.set_secret("token-cache-abc", "v2")

    # WHEN it is read back
    latest = client.get_secret("token-cache-abc")
    older = client.get_secret("token-cache-abc", first.properties.version)
    versions = list(client.list_properties_of_secret_versions("token-cache-abc"))
    names = [p.name for p in client.list_properties_of_secrets()]

    # THEN values, versions and listing match
    assert latest.value == "v2"
    assert latest.properties.version == second.properties.version
    assert older.value == "v1"
    assert {v.version for v in versions} == {first.properties.version, second.properties.version}
    assert names == ["token-cache-abc"]

    # WHEN it is deleted and the name is reused
    deleted = client.begin_delete_secret("token-cache-abc", _polling_interval=0).result()
    with pytest.raises(ResourceExistsError) as conflict:
        client.set_secret("token-cache-abc", "v3")

    # THEN the SDK sees a soft-deleted secret and Key Vault's 409
    assert deleted.recovery_id.endswith("/deletedsecrets/token-cache-abc")
    assert isinstance(conflict.value, HttpResponseError)
    assert conflict.value.status_code == 409
    assert "ObjectIsDeletedButRecoverable" in str(conflict.value)
    assert client.get_deleted_secret("token-cache-abc").name == "token-cache-abc"

    # WHEN the deleted secret is purged
    client.purge_deleted_secret("token-cache-abc")

    # THEN the name can be used again
    assert client.set_secret("token-cache-abc", "v3").value == "v3"
    assert sim.vault_get("token-cache-abc") == "v3"


def test_secret_client_recovers_deleted_secret(sim, client):
    """A soft-deleted secret comes back with its value after recover."""
    # GIVEN a deleted secret
    sim.vault_set("recover-me", "kept")
    client.begin_delete_secret("recover-me", _polling_interval=0).wait()

    # WHEN it is recovered
    client.begin_recover_deleted_secret("recover-me", _polling_interval=0).wait()

    # THEN it is live again
    assert client.get_secret("recover-me").value == "kept"


def test_secret_client_missing_secret_is_not_found(client):
    """Reading an unknown secret raises ResourceNotFoundError."""
    # GIVEN / WHEN / THEN
    with pytest.raises(ResourceNotFoundError):
        client.get_secret("never-set")


def test_vault_without_token_gets_challenge(sim, tls):
    """An anonymous request gets the 401 bearer challenge naming the authority and resource."""
    # GIVEN / WHEN an anonymous request
    response = requests.get(f"{sim.vault_url}/secrets/x?api-version=7.5", verify=str(tls.ca_pem))

    # THEN it is challenged like a real vault
    challenge = response.headers["WWW-Authenticate"]
    assert response.status_code == 401
    assert f'authorization="{sim.authority_host}/{sim.vault_tenant_id}"' in challenge
    assert 'resource="https://vault.azure.net"' in challenge


def test_secret_client_bad_name_is_bad_parameter(client):
    """A name with characters Key Vault refuses gets 400 BadParameter."""
    # GIVEN / WHEN a name with an underscore
    with pytest.raises(HttpResponseError) as error:
        client.set_secret("bad_name", "x")

    # THEN it is refused
    assert error.value.status_code == 400
    assert error.value.error.code == "BadParameter"


def test_vault_python_api_reports_missing_secret(sim):
    """vault_get raises VaultError for a secret that does not exist."""
    # GIVEN / WHEN / THEN
    with pytest.raises(VaultError):
        sim.vault_get("absent")
