"""Typed settings, read once from the environment, with every problem reported at once.

Every environment name the product reads is a constant in this module and is read here only. Each
is set in ``local.settings.sample.json`` unless it is in :data:`DEPLOYED_ONLY_SETTINGS`, and in
the Function App's app settings (``infra/app/function-app.bicep``) unless it is in
:data:`LOCAL_ONLY_SETTINGS`; ``tests/unit/test_infra_settings.py`` holds both true.

Secrets are not settings: the Microsoft client secret and the refresh-token encryption key are
read from Key Vault under the names given here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from shared.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

STORAGE_CONNECTION = "AzureWebJobsStorage"
STORAGE_TABLE_URI = "AzureWebJobsStorage__tableServiceUri"
STORAGE_QUEUE_URI = "AzureWebJobsStorage__queueServiceUri"
STORAGE_BLOB_URI = "AzureWebJobsStorage__blobServiceUri"
STORAGE_CLIENT_ID = "AzureWebJobsStorage__clientId"
GRAPH_BASE_URL = "GRAPH_BASE_URL"
IDENTITY_AUTHORITY_HOST = "IDENTITY_AUTHORITY_HOST"
MSAL_AUTHORITY_TENANT = "MSAL_AUTHORITY_TENANT"
MICROSOFT_CLIENT_ID = "MICROSOFT_CLIENT_ID"
MICROSOFT_CLIENT_SECRET_NAME = "MICROSOFT_CLIENT_SECRET_NAME"  # noqa: S105 - a setting name
TOKEN_KEY_SECRET_NAME = "TOKEN_KEY_SECRET_NAME"  # noqa: S105 - a setting name
KEY_VAULT_URL = "KEY_VAULT_URL"
KEY_VAULT_VERIFY_CHALLENGE_RESOURCE = "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE"
API_AUDIENCE = "API_AUDIENCE"
CONSENT_REDIRECT_URI = "CONSENT_REDIRECT_URI"
GRAPH_PAGE_SIZE = "GRAPH_PAGE_SIZE"
AZURE_CLIENT_ID = "AZURE_CLIENT_ID"
AZURE_TENANT_ID = "AZURE_TENANT_ID"
AZURE_CLIENT_SECRET = "AZURE_CLIENT_SECRET"  # noqa: S105 - a setting name
AZURE_AUTHORITY_HOST = "AZURE_AUTHORITY_HOST"

ALL_SETTINGS = (
    STORAGE_CONNECTION,
    GRAPH_BASE_URL,
    IDENTITY_AUTHORITY_HOST,
    MSAL_AUTHORITY_TENANT,
    MICROSOFT_CLIENT_ID,
    MICROSOFT_CLIENT_SECRET_NAME,
    TOKEN_KEY_SECRET_NAME,
    KEY_VAULT_URL,
    KEY_VAULT_VERIFY_CHALLENGE_RESOURCE,
    API_AUDIENCE,
    CONSENT_REDIRECT_URI,
    GRAPH_PAGE_SIZE,
)
"""Names every deployment sets; the identity-based and local-identity names are optional."""

DEPLOYED_ONLY_SETTINGS = frozenset(
    {STORAGE_TABLE_URI, STORAGE_QUEUE_URI, STORAGE_BLOB_URI, STORAGE_CLIENT_ID}
)
"""Names only Azure sets: the identity-based storage connection, in place of a key."""

LOCAL_ONLY_SETTINGS = frozenset({STORAGE_CONNECTION, AZURE_CLIENT_SECRET, AZURE_AUTHORITY_HOST})
"""Names only the local stack sets: a storage key and a client secret stand in for the identity."""


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where tables, queues and blobs live: one connection string, or three service URIs."""

    connection_string: str | None
    table_uri: str | None
    queue_uri: str | None
    blob_uri: str | None
    client_id: str | None


@dataclass(frozen=True, slots=True)
class AppIdentitySettings:
    """How the app authenticates to Key Vault: a managed identity, or a local client secret."""

    client_id: str | None
    tenant_id: str | None
    client_secret: str | None
    authority_host: str | None


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting the product reads, validated."""

    storage: StorageSettings
    app_identity: AppIdentitySettings
    graph_base_url: str
    authority_host: str
    msal_authority_tenant: str
    client_id: str
    client_secret_name: str
    token_key_secret_name: str
    key_vault_url: str
    key_vault_verify_challenge_resource: bool
    api_audience: str
    consent_redirect_uri: str
    graph_page_size: int

    @property
    def msal_authority(self) -> str:
        """The authority MSAL signs users in against, for example ``.../organizations``."""
        return f"{self.authority_host}/{self.msal_authority_tenant}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings.

        Raises:
            ConfigError: when any setting is missing or malformed; the message lists them all.
        """
        reader = _Reader(os.environ if env is None else env)
        settings = cls(
            storage=reader.storage(),
            app_identity=AppIdentitySettings(
                client_id=reader.optional(AZURE_CLIENT_ID),
                tenant_id=reader.optional(AZURE_TENANT_ID),
                client_secret=reader.optional(AZURE_CLIENT_SECRET),
                authority_host=reader.optional(AZURE_AUTHORITY_HOST),
            ),
            graph_base_url=reader.https_url(GRAPH_BASE_URL, "https://graph.microsoft.com/v1.0"),
            authority_host=reader.https_url(
                IDENTITY_AUTHORITY_HOST, "https://login.microsoftonline.com"
            ),
            msal_authority_tenant=reader.text(MSAL_AUTHORITY_TENANT, "organizations"),
            client_id=reader.text(MICROSOFT_CLIENT_ID),
            client_secret_name=reader.text(MICROSOFT_CLIENT_SECRET_NAME, "microsoft-client-secret"),
            token_key_secret_name=reader.text(TOKEN_KEY_SECRET_NAME, "token-encryption-key"),
            key_vault_url=reader.https_url(KEY_VAULT_URL),
            key_vault_verify_challenge_resource=reader.flag(
                KEY_VAULT_VERIFY_CHALLENGE_RESOURCE, default=True
            ),
            api_audience=reader.text(API_AUDIENCE),
            consent_redirect_uri=reader.url(CONSENT_REDIRECT_URI),
            graph_page_size=reader.integer(GRAPH_PAGE_SIZE, 50, low=1, high=1000),
        )
        reader.raise_problems()
        return settings


class _Reader:
    """Collects every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self._problems: list[str] = []

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str | None = None) -> str:
        value = self.optional(name) or default
        if value is None:
            self._problems.append(f"{name} is required and not set")
            return ""
        return value

    def url(self, name: str, default: str | None = None, *, https: bool = False) -> str:
        value = self.text(name, default).rstrip("/")
        parts = urlsplit(value)
        allowed = ("https",) if https else ("http", "https")
        if value and (parts.scheme not in allowed or not parts.netloc):
            scheme = "https" if https else "http(s)"
            self._problems.append(f"{name} must be an absolute {scheme} URL, got {value!r}")
        return value

    def https_url(self, name: str, default: str | None = None) -> str:
        return self.url(name, default, https=True)

    def flag(self, name: str, *, default: bool) -> bool:
        value = (self.optional(name) or str(default)).lower()
        if value not in ("true", "false", "1", "0"):
            self._problems.append(f"{name} must be true or false, got {value!r}")
        return value in ("true", "1")

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.optional(name) or str(default)
        # NOTE: str.isdigit() is also true for "²", which int() refuses; keep to ASCII digits.
        if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
            self._problems.append(
                f"{name} must be a whole number from {low} to {high}, got {raw!r}"
            )
            return default
        return int(raw)

    def storage(self) -> StorageSettings:
        storage = StorageSettings(
            connection_string=self.optional(STORAGE_CONNECTION),
            table_uri=self.optional(STORAGE_TABLE_URI),
            queue_uri=self.optional(STORAGE_QUEUE_URI),
            blob_uri=self.optional(STORAGE_BLOB_URI),
            client_id=self.optional(STORAGE_CLIENT_ID),
        )
        uris = (storage.table_uri, storage.queue_uri, storage.blob_uri)
        if storage.connection_string is None and not all(uris):
            self._problems.append(
                f"{STORAGE_CONNECTION} must be set, or all of {STORAGE_TABLE_URI}, "
                f"{STORAGE_QUEUE_URI} and {STORAGE_BLOB_URI}"
            )
        return storage

    def raise_problems(self) -> None:
        if self._problems:
            message = "invalid settings: " + "; ".join(self._problems)
            raise ConfigError(message)
