"""Unit tests for shared.settings."""

from __future__ import annotations

import pytest

from shared import settings as names
from shared.errors import ConfigError
from shared.settings import Settings

REQUIRED = {
    names.STORAGE_CONNECTION: "UseDevelopmentStorage=true",
    names.MICROSOFT_CLIENT_ID: "00000000-0000-0000-0000-0000000000a1",
    names.KEY_VAULT_URL: "https://vault.example.net/",
    names.API_AUDIENCE: "api://outlook-sync",
    names.CONSENT_REDIRECT_URI: "https://app.example.net/api/consent/callback",
}


def _env(**changes: str | None) -> dict[str, str]:
    """Return the minimal complete environment with some names changed or removed."""
    env = dict(REQUIRED)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _problems(env: dict[str, str]) -> str:
    """Return the message of the ConfigError the environment raises."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    return str(caught.value)


def test_from_env_complete_environment_uses_defaults():
    """The required names alone give settings with every documented default."""
    # GIVEN only the required names

    # WHEN the settings are read
    settings = Settings.from_env(_env())

    # THEN the required values are kept and the optional ones take their defaults
    assert settings.storage.connection_string == "UseDevelopmentStorage=true"
    assert settings.key_vault_url == "https://vault.example.net"
    assert settings.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert settings.msal_authority == "https://login.microsoftonline.com/organizations"
    assert settings.client_secret_name == "microsoft-client-secret"
    assert settings.token_key_secret_name == "token-encryption-key"
    assert settings.key_vault_verify_challenge_resource is True
    assert settings.graph_page_size == 50
    assert settings.app_identity.client_id is None


def test_from_env_explicit_values_override_defaults():
    """Set optional names win over the defaults."""
    # GIVEN optional names with non-default values
    env = _env(
        GRAPH_PAGE_SIZE="999",
        KEY_VAULT_VERIFY_CHALLENGE_RESOURCE="FALSE",
        MSAL_AUTHORITY_TENANT="contoso.example",
        GRAPH_BASE_URL="https://127.0.0.1:8443/graph/v1.0/",
    )

    # WHEN the settings are read
    settings = Settings.from_env(env)

    # THEN each value is taken as given, normalised
    assert settings.graph_page_size == 999
    assert settings.key_vault_verify_challenge_resource is False
    assert settings.msal_authority.endswith("/contoso.example")
    assert settings.graph_base_url == "https://127.0.0.1:8443/graph/v1.0"


def test_from_env_lists_every_problem_in_one_error():
    """Several missing and malformed values are all reported by one ConfigError."""
    # GIVEN an environment with a missing id, bad URL, bad page size, bad flag, no storage
    env = _env(
        MICROSOFT_CLIENT_ID=None,
        AzureWebJobsStorage=None,
        KEY_VAULT_URL="http://vault.example.net",
        GRAPH_PAGE_SIZE="5000",
        KEY_VAULT_VERIFY_CHALLENGE_RESOURCE="maybe",
    )

    # WHEN the settings are read
    message = _problems(env)

    # THEN every offending name is in the one message
    for name in (
        names.MICROSOFT_CLIENT_ID,
        names.STORAGE_CONNECTION,
        names.KEY_VAULT_URL,
        names.GRAPH_PAGE_SIZE,
        names.KEY_VAULT_VERIFY_CHALLENGE_RESOURCE,
    ):
        assert name in message
    assert message.count(";") == 4


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (names.KEY_VAULT_URL, "http://vault.example.net"),
        (names.KEY_VAULT_URL, "vault.example.net"),
        (names.GRAPH_BASE_URL, "ftp://graph.example.net"),
        (names.CONSENT_REDIRECT_URI, "/api/consent/callback"),
        (names.GRAPH_PAGE_SIZE, "0"),
        (names.GRAPH_PAGE_SIZE, "1001"),
        (names.GRAPH_PAGE_SIZE, "-5"),
        (names.GRAPH_PAGE_SIZE, "fifty"),
        (names.GRAPH_PAGE_SIZE, "\u00b2"),
        (names.KEY_VAULT_VERIFY_CHALLENGE_RESOURCE, "yes"),
    ],
)
def test_from_env_malformed_value_raises_config_error(name, value):
    """A malformed value raises ConfigError naming the setting, never another exception."""
    # GIVEN a complete environment with one malformed value
    env = _env(**{name: value})

    # WHEN the settings are read
    message = _problems(env)

    # THEN the setting is named
    assert name in message


@pytest.mark.parametrize(
    "name", [names.MICROSOFT_CLIENT_ID, names.API_AUDIENCE, names.CONSENT_REDIRECT_URI]
)
def test_from_env_blank_required_value_counts_as_missing(name):
    """A required name set to blanks is reported as not set."""
    # GIVEN a required name holding only spaces
    env = _env(**{name: "   "})

    # WHEN the settings are read
    message = _problems(env)

    # THEN it is reported as required
    assert f"{name} is required" in message


def test_from_env_accepts_identity_based_storage():
    """Three storage service URIs replace the connection string."""
    # GIVEN no connection string but the identity-based storage names
    env = _env(
        AzureWebJobsStorage=None,
        AzureWebJobsStorage__tableServiceUri="https://acct.table.core.windows.net",
        AzureWebJobsStorage__queueServiceUri="https://acct.queue.core.windows.net",
        AzureWebJobsStorage__blobServiceUri="https://acct.blob.core.windows.net",
        AzureWebJobsStorage__clientId="11111111-2222-3333-4444-555555555555",
    )

    # WHEN the settings are read
    settings = Settings.from_env(env)

    # THEN the URIs and client id are kept and there is no connection string
    assert settings.storage.connection_string is None
    assert settings.storage.table_uri == "https://acct.table.core.windows.net"
    assert settings.storage.queue_uri == "https://acct.queue.core.windows.net"
    assert settings.storage.blob_uri == "https://acct.blob.core.windows.net"
    assert settings.storage.client_id == "11111111-2222-3333-4444-555555555555"


def test_from_env_partial_identity_storage_is_refused():
    """Two of the three storage service URIs without a connection string are refused."""
    # GIVEN a table and queue URI but no blob URI and no connection string
    env = _env(
        AzureWebJobsStorage=None,
        AzureWebJobsStorage__tableServiceUri="https://acct.table.core.windows.net",
        AzureWebJobsStorage__queueServiceUri="https://acct.queue.core.windows.net",
    )

    # WHEN the settings are read
    message = _problems(env)

    # THEN the missing blob URI is part of the explanation
    assert names.STORAGE_BLOB_URI in message
