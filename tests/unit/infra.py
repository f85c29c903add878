"""Read what the Bicep in infra/ creates and sets, with the parser checkov itself uses (pycep)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
FUNCTION_APP_BICEP = INFRA / "app" / "function-app.bicep"
STORAGE_BICEP = INFRA / "app" / "storage.bicep"
SAMPLE_SETTINGS = ROOT / "local.settings.sample.json"

APP_SETTINGS_TYPE = "Microsoft.Web/sites/config"
QUEUE_TYPE = "Microsoft.Storage/storageAccounts/queueServices/queues"
TABLE_TYPE = "Microsoft.Storage/storageAccounts/tableServices/tables"


@cache
def bicep_resources() -> tuple[tuple[str, dict[str, Any]], ...]:
    """Return every resource declared in infra/, as (file relative to the repo, resource)."""
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(INFRA.rglob("*.bicep")):
        parsed = BicepParser().parse(file_path=path)
        resources = (parsed.get("resources") or {}).values()
        found.extend((str(path.relative_to(ROOT)), resource) for resource in resources)
    return tuple(found)


def app_setting_values() -> dict[str, Any]:
    """Return the Function App's ``appsettings`` config: names and parsed value expressions."""
    values: dict[str, Any] = {}
    for _, resource in bicep_resources():
        config = resource.get("config") or {}
        if resource.get("type") == APP_SETTINGS_TYPE and config.get("name") == "appsettings":
            values.update(config.get("properties") or {})
    return values


def app_setting_names() -> set[str]:
    """Return the names the Bicep sets in the Function App's ``appsettings`` config."""
    return set(app_setting_values())


def created_names(resource_type: str) -> set[str]:
    """Return the literal names of every resource of one type the Bicep creates."""
    names = set()
    for _, resource in bicep_resources():
        name = (resource.get("config") or {}).get("name")
        literal = isinstance(name, str) and "${" not in name
        if resource.get("type") == resource_type and not resource.get("existing") and literal:
            names.add(name)
    return names


def sample_setting_names() -> set[str]:
    """Return the names under ``Values`` in local.settings.sample.json."""
    return set(json.loads(SAMPLE_SETTINGS.read_text(encoding="utf-8"))["Values"])
