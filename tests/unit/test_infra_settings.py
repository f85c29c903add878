"""Every setting the code reads is set on Azure (infra/) and in local.settings.sample.json.

The names are not listed here: they are recorded while ``Settings.from_env`` reads an environment,
so a setting added to shared/settings.py is checked without touching this file.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from shared import settings as settings_module
from shared.errors import ConfigError
from shared.settings import DEPLOYED_ONLY_SETTINGS, LOCAL_ONLY_SETTINGS, Settings
from tests.unit.infra import (
    FUNCTION_APP_BICEP,
    ROOT,
    SAMPLE_SETTINGS,
    app_setting_names,
    sample_setting_names,
)

SETTINGS_FILE = Path(settings_module.__file__).resolve()
PRODUCT_CODE = [ROOT / "function_app.py", *sorted((ROOT / "shared").rglob("*.py"))]


class _RecordingEnvironment(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __getitem__(self, name: str) -> str:
        self.names.append(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _names_the_code_reads() -> set[str]:
    env = _RecordingEnvironment()
    with contextlib.suppress(ConfigError):
        Settings.from_env(env)
    return set(env.names)


def _listing(names: set[str]) -> str:
    return ", ".join(sorted(names))


def test_settings_reading_records_every_name():
    """Reading an empty environment looks up the storage, identity and Graph settings."""
    # GIVEN / WHEN the settings read an empty environment
    names = _names_the_code_reads()

    # THEN the recorder saw names of each kind, so the checks below compare real lists
    assert {"AzureWebJobsStorage", "KEY_VAULT_URL", "AZURE_CLIENT_ID"} <= names


def test_infra_sets_every_setting_the_code_reads():
    """The Function App's app settings in the Bicep hold every name except the local-only ones."""
    # GIVEN the names the code reads and the names the Bicep sets
    needed = _names_the_code_reads() - LOCAL_ONLY_SETTINGS
    in_bicep = app_setting_names()

    # WHEN they are compared
    missing = needed - in_bicep

    # THEN nothing is missing
    where = FUNCTION_APP_BICEP.relative_to(ROOT)
    assert not missing, (
        f"{where} does not set {_listing(missing)}: add each as `NAME: <value on Azure>` under "
        "`properties` of `resource appSettings` (Microsoft.Web/sites/config 'appsettings'), "
        "taking the value from a module parameter that infra/main.bicep passes; or, when only "
        "the local stack uses it, add it to LOCAL_ONLY_SETTINGS in shared/settings.py"
    )


def test_infra_sets_no_local_only_setting():
    """A storage key or client secret (local-only names) is never an app setting on Azure."""
    # GIVEN / WHEN the Bicep's app settings are read
    leaked = app_setting_names() & LOCAL_ONLY_SETTINGS

    # THEN none of them is local-only
    where = FUNCTION_APP_BICEP.relative_to(ROOT)
    assert not leaked, (
        f"{where} sets {_listing(leaked)}, which Azure must not have: remove them; the app "
        "reaches storage and Key Vault with its managed identity"
    )


def test_sample_settings_hold_every_setting_the_code_reads():
    """local.settings.sample.json holds every name except the ones only Azure sets."""
    # GIVEN the names the code reads and the sample's names
    needed = _names_the_code_reads() - DEPLOYED_ONLY_SETTINGS

    # WHEN they are compared
    missing = needed - sample_setting_names()

    # THEN nothing is missing
    assert not missing, (
        f"{SAMPLE_SETTINGS.name} has no value for {_listing(missing)}: add each under "
        '"Values" as `"NAME": "<value for the local stack>"` (devstack/stack.py gives the local '
        "stack the same values); or, when only Azure sets it, add it to DEPLOYED_ONLY_SETTINGS "
        "in shared/settings.py"
    )


def test_setting_exceptions_name_settings_the_code_reads():
    """The local-only and Azure-only lists hold only names the code reads, never the same one."""
    # GIVEN the names the code reads
    read = _names_the_code_reads()

    # WHEN the exception lists are compared with them and with each other
    stale = (LOCAL_ONLY_SETTINGS | DEPLOYED_ONLY_SETTINGS) - read
    both = LOCAL_ONLY_SETTINGS & DEPLOYED_ONLY_SETTINGS

    # THEN every entry is live and each list is its own
    assert not stale, (
        f"shared/settings.py lists {_listing(stale)} in LOCAL_ONLY_SETTINGS or "
        "DEPLOYED_ONLY_SETTINGS, but Settings.from_env never reads them: remove them there"
    )
    assert not both, f"shared/settings.py lists {_listing(both)} as both local-only and Azure-only"


def _environment_reads(path: Path) -> list[str]:
    """Return ``file:line`` of each os.environ or os.getenv use in one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb"}
    ]


def test_only_the_settings_module_reads_the_environment():
    """No product module but shared/settings.py reads environment variables."""
    # GIVEN every product module except the settings module
    modules = [path for path in PRODUCT_CODE if path.resolve() != SETTINGS_FILE]

    # WHEN each is searched for environment reads
    reads = [where for path in modules for where in _environment_reads(path)]

    # THEN there are none, so the checks above see every setting
    assert not reads, (
        f"environment read outside shared/settings.py at {', '.join(reads)}: add the name as a "
        "constant and a field of Settings in shared/settings.py and read it from there"
    )
