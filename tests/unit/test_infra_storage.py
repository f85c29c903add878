"""Every queue and table the code uses exists before it is used: the product or the Bicep makes it.

Nothing is listed here. Queues come from the queue bindings of the indexed function app and from
the first argument of every ``JobQueue`` call in shared/; tables from the first argument of every
``TableEntityStore`` call and from ``TABLES``. What the product creates is recorded while
shared/wiring.py builds its clients against recording fakes.
"""

from __future__ import annotations

import ast
import importlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from shared import wiring
from shared.adapters.queues import JobQueue
from shared.adapters.tables import TABLES, TableEntityStore
from shared.settings import Settings
from tests.unit.infra import (
    QUEUE_TYPE,
    ROOT,
    SAMPLE_SETTINGS,
    STORAGE_BICEP,
    TABLE_TYPE,
    created_names,
)

SHARED = ROOT / "shared"


class _RecordingQueues:
    """Stands in for QueueServiceClient: each queue client records the queues it creates."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def get_queue_client(self, name: str, **_policies: Any) -> _RecordingQueue:
        return _RecordingQueue(name, self.created)


class _RecordingQueue:
    def __init__(self, name: str, created: list[str]) -> None:
        self._name = name
        self._created = created

    def create_queue(self) -> None:
        self._created.append(self._name)


class _RecordingTables:
    """Stands in for TableServiceClient: records the tables it creates."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def create_table_if_not_exists(self, name: str) -> None:
        self.created.append(name)


class _Factory:
    """Stands in for an SDK client class: ``from_connection_string`` gives the one fake."""

    def __init__(self, client: object) -> None:
        self._client = client

    def from_connection_string(self, _connection: str) -> object:
        return self._client


def _local_settings() -> Settings:
    values = json.loads(SAMPLE_SETTINGS.read_text(encoding="utf-8"))["Values"]
    return Settings.from_env(values)


@pytest.fixture
def created_by_product(monkeypatch: pytest.MonkeyPatch) -> tuple[set[str], set[str]]:
    """Return (queues, tables) the product creates when its clients are first built."""
    queues, tables = _RecordingQueues(), _RecordingTables()
    monkeypatch.setattr(wiring, "QueueServiceClient", _Factory(queues))
    monkeypatch.setattr(wiring, "TableServiceClient", _Factory(tables))

    services = wiring.Services(_local_settings())
    assert services.queue is not None
    assert services.tables is not None
    return set(queues.created), set(tables.created)


def _public_methods(cls: type) -> set[str]:
    return {name for name in vars(cls) if not name.startswith("_") and name[:7] != "ensure_"}


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _first_arguments(receivers: set[str], methods: set[str]) -> dict[str, str]:
    """Return each literal first argument of ``<receiver>.<method>(...)`` in shared/, with where."""
    found: dict[str, str] = {}
    for path in sorted(SHARED.rglob("*.py")):
        module = importlib.import_module(_module_of(path))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = node.func.value
            named = isinstance(receiver, ast.Attribute) and receiver.attr in receivers
            if not named or node.func.attr not in methods or not node.args:
                continue
            value = _literal(node.args[0], module)
            if value is not None:
                found.setdefault(value, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def _literal(argument: ast.expr, module: object) -> str | None:
    """Return a string constant, or the value of a module-level name bound to one."""
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return argument.value
    if isinstance(argument, ast.Name):
        value = getattr(module, argument.id, None)
        return value if isinstance(value, str) else None
    return None


@cache
def _triggered_queues() -> frozenset[str]:
    """Return every queue named by a binding of the indexed function app (indexed once)."""
    import function_app

    return frozenset(
        str(binding.get_dict_repr()["queueName"])
        for function in function_app.app.get_functions()
        for binding in function.get_bindings()
        if "queueName" in binding.get_dict_repr()
    )


def _missing_message(kind: str, missing: dict[str, str], code_list: str) -> str:
    used = ", ".join(f"{name} (used at {where})" for name, where in sorted(missing.items()))
    return (
        f"nothing creates the {kind} {used}: add each to {code_list}, which the product creates "
        f"on start-up, or create it in {STORAGE_BICEP.relative_to(ROOT)}"
    )


def test_code_scan_finds_the_queues_and_tables_in_use():
    """The scan of shared/ finds queue and table names, so the checks below compare real lists."""
    # GIVEN / WHEN shared/ is scanned for JobQueue and TableEntityStore calls
    queues = _first_arguments({"_queue", "queue"}, _public_methods(JobQueue))
    tables = _first_arguments({"_tables", "tables"}, _public_methods(TableEntityStore))

    # THEN both scans and the function app's bindings found names
    assert queues
    assert tables
    assert _triggered_queues()


def test_every_queue_the_code_uses_is_created(created_by_product):
    """Each queue a trigger listens on or a producer sends to is created by the product or Bicep."""
    # GIVEN the queues the code triggers on and sends to
    used = dict.fromkeys(_triggered_queues(), "a queue binding in shared/triggers/")
    used.update(_first_arguments({"_queue", "queue"}, _public_methods(JobQueue)))

    # WHEN they are compared with what the product and the Bicep create
    created = created_by_product[0] | created_names(QUEUE_TYPE)
    missing = {name: where for name, where in used.items() if name not in created}

    # THEN every one of them is created
    assert not missing, _missing_message("queue", missing, "QUEUES in shared/adapters/queues.py")


def test_every_table_the_code_uses_is_created(created_by_product):
    """Each table in TABLES or in a TableEntityStore call is created by the product or Bicep."""
    # GIVEN the tables the code uses
    used = dict.fromkeys(TABLES, "TABLES in shared/adapters/tables.py")
    used.update(_first_arguments({"_tables", "tables"}, _public_methods(TableEntityStore)))

    # WHEN they are compared with what the product and the Bicep create
    created = created_by_product[1] | created_names(TABLE_TYPE)
    missing = {name: where for name, where in used.items() if name not in created}

    # THEN every one of them is created
    assert not missing, _missing_message("table", missing, "TABLES in shared/adapters/tables.py")
