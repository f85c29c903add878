"""The Bicep keeps the deployment's security settings, including ones checkov does not check."""

from __future__ import annotations

import re
from typing import Any

from tests.unit.infra import INFRA, ROOT, app_setting_values, bicep_resources

GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
ROLE_VARIABLE = re.compile(r"^var \w+ = '" + GUID.pattern + "'$", re.IGNORECASE)


def _configs(resource_type: str) -> list[dict[str, Any]]:
    """Return the body of every resource of one type the Bicep creates (not ``existing``)."""
    found = [
        resource["config"]
        for _, resource in bicep_resources()
        if resource.get("type") == resource_type and not resource.get("existing")
    ]
    assert found, f"infra/ declares no {resource_type}"
    return found


def _properties(resource_type: str) -> list[dict[str, Any]]:
    """Return the properties of every resource of one type the Bicep creates."""
    return [config.get("properties") or {} for config in _configs(resource_type)]


def test_storage_accepts_only_entra_id_over_tls12():
    """The storage account has shared keys off, TLS 1.2 and no public blobs."""
    # GIVEN / WHEN the storage account's properties are read
    for properties in _properties("Microsoft.Storage/storageAccounts"):
        # THEN only Entra ID callers over TLS 1.2 get in, and no blob is public
        assert properties["allowSharedKeyAccess"] is False
        assert properties["minimumTlsVersion"] == "TLS1_2"
        assert properties["allowBlobPublicAccess"] is False


def test_key_vault_uses_rbac_soft_delete_and_purge_protection():
    """The Key Vault authorises by RBAC and keeps deleted secrets recoverable."""
    # GIVEN / WHEN the vault's properties are read
    for properties in _properties("Microsoft.KeyVault/vaults"):
        # THEN access policies are off and deletes are recoverable
        assert properties["enableRbacAuthorization"] is True
        assert properties["enableSoftDelete"] is True
        assert properties["enablePurgeProtection"] is True


def test_function_app_runs_python_311_on_flex_as_its_identity():
    """The app is Python 3.11 on Flex Consumption, running as one user-assigned identity."""
    # GIVEN / WHEN the plan and the site are read
    plans = _configs("Microsoft.Web/serverfarms")
    sites = _configs("Microsoft.Web/sites")

    # THEN the plan is Flex Consumption and the site runs Python 3.11 as its identity
    assert [plan["sku"] for plan in plans] == [{"tier": "FlexConsumption", "name": "FC1"}]
    for site in sites:
        config = site["properties"]["functionAppConfig"]
        assert config["runtime"] == {"name": "python", "version": "3.11"}
        assert site["identity"]["type"] == "UserAssigned"
        assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"


def test_host_storage_connects_with_the_managed_identity():
    """AzureWebJobsStorage is identity-based: the managed identity, no connection string."""
    # GIVEN / WHEN the app settings are read
    settings = app_setting_values()

    # THEN the host authenticates with the identity, never with a key
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert "AzureWebJobsStorage" not in settings
    assert "Authorization=AAD" in str(settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"])


def test_monitoring_refuses_key_based_ingestion():
    """Application Insights accepts telemetry only with Entra ID."""
    # GIVEN / WHEN the component's properties are read
    for properties in _properties("Microsoft.Insights/components"):
        # THEN its local (instrumentation key) authentication is off
        assert properties["DisableLocalAuth"] is True


def test_every_role_id_is_a_named_variable_with_its_role_name():
    """Role definition GUIDs appear only as `var <name> = '<guid>'` under a comment naming it."""
    # GIVEN every Bicep file
    misplaced = []
    for path in sorted(INFRA.rglob("*.bicep")):
        lines = path.read_text(encoding="utf-8").splitlines()

        # WHEN each GUID is looked at
        for number, line in enumerate(lines):
            if not GUID.search(line):
                continue
            named = ROLE_VARIABLE.match(line.strip()) is not None
            commented = number > 0 and lines[number - 1].strip().startswith("//")
            if not (named and commented):
                misplaced.append(f"{path.relative_to(ROOT)}:{number + 1}")

    # THEN each is a named variable below a comment with the role's name
    assert not misplaced, (
        f"role GUIDs outside a commented `var <name> = '<guid>'` at {', '.join(misplaced)}: "
        "declare each as a variable under a `// <role name>: <why>` comment and use the variable"
    )
