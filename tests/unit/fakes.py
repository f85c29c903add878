"""Hand-written in-memory fakes of the product's adapters, shared by the unit tests.

Each fake offers the same methods, signatures and error types as the adapter it stands for, and
enforces the same rules the adapter enforces before the service sees a request (the table fake
guards every entity with :func:`guard_entity`), so a unit test that passes with a fake does not
lean on leniency the real service would not show.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from shared.adapters.keyvault import Secret
from shared.adapters.tablelimits import guard_entity
from shared.adapters.tables import ETAG
from shared.errors import ConflictError, SecretStoreError, SecretVersionUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

Entity = dict[str, Any]
_CLAUSE = re.compile(r"^(\w+) (eq|gt) @(\w+)$")


class FakeSecrets:
    """Key Vault stand-in: named secrets with versions, one of them current."""

    def __init__(self) -> None:
        self._versions: dict[str, dict[str, str]] = {}
        self._current: dict[str, str] = {}

    def set(self, name: str, version: str, value: str) -> None:
        """Add a version of a secret and make it the current one."""
        self._versions.setdefault(name, {})[version] = value
        self._current[name] = version

    def get(self, name: str) -> Secret:
        """Return the current version of a secret."""
        version = self._current[name]
        return Secret(self._versions[name][version], version)

    def get_version(self, name: str, version: str) -> Secret:
        """Return one version of a secret, refusing one removed as Key Vault would."""
        if name not in self._current:
            msg = f"secret {name!r} does not exist"
            raise SecretStoreError(msg)
        if version not in self._versions[name]:
            msg = f"version {version!r} of secret {name!r} is gone or disabled"
            raise SecretVersionUnavailableError(msg)
        return Secret(self._versions[name][version], version)

    def remove_version(self, name: str, version: str) -> None:
        """Make one version unreadable, as purging or disabling it in Key Vault does."""
        del self._versions[name][version]

    def delete(self, name: str) -> None:
        """Remove the whole secret, as a soft delete in Key Vault does."""
        del self._current[name]


class FakeTables:
    """Table Storage stand-in with the method signatures of ``TableEntityStore``.

    ``fail`` may be set to a callable ``(operation, table, entity_or_keys)`` that raises, to
    make a chosen write fail.
    """

    def __init__(self) -> None:
        self.tables: dict[str, dict[tuple[str, str], Entity]] = {}
        self.fail: Callable[[str, str, Any], None] | None = None
        self._etags = itertools.count(1)

    def rows(self, table: str) -> list[Entity]:
        """Return copies of every stored row of a table in key order, without ETags."""
        stored = self.tables.get(table, {})
        return [dict(stored[key]) for key in sorted(stored)]

    def get(self, table: str, partition: str, row: str) -> Entity | None:
        """Return one entity with its ETag, or ``None`` when it does not exist."""
        found = self.tables.get(table, {}).get((partition, row))
        return None if found is None else self._out(found)

    def upsert(self, table: str, entity: Mapping[str, Any], *, replace: bool = False) -> None:
        """Insert or merge (or replace) an entity unconditionally."""
        clean = self._clean("upsert", table, entity)
        key = (clean["PartitionKey"], clean["RowKey"])
        stored = self.tables.setdefault(table, {})
        merged = clean if replace or key not in stored else {**stored[key], **clean}
        stored[key] = self._stamp(merged)

    def create(self, table: str, entity: Mapping[str, Any]) -> str:
        """Insert an entity that must not exist yet; return its new ETag."""
        clean = self._clean("create", table, entity)
        key = (clean["PartitionKey"], clean["RowKey"])
        stored = self.tables.setdefault(table, {})
        if key in stored:
            msg = f"{table} entity already exists"
            raise ConflictError(msg)
        stored[key] = self._stamp(clean)
        return str(stored[key][ETAG])

    def update(self, table: str, entity: Mapping[str, Any], *, etag: str | None) -> str:
        """Replace an entity only if unchanged since read (or create it if no ETag)."""
        if etag is None:
            return self.create(table, entity)
        clean = self._clean("update", table, entity)
        key = (clean["PartitionKey"], clean["RowKey"])
        stored = self.tables.setdefault(table, {})
        if key not in stored or stored[key][ETAG] != etag:
            msg = f"{table} entity changed since it was read"
            raise ConflictError(msg)
        stored[key] = self._stamp(clean)
        return str(stored[key][ETAG])

    def delete(self, table: str, partition: str, row: str, *, etag: str | None = None) -> None:
        """Delete an entity; succeeds when it is already gone unless an ETag is given."""
        if self.fail is not None:
            self.fail("delete", table, (partition, row))
        stored = self.tables.setdefault(table, {})
        found = stored.get((partition, row))
        if etag is not None and (found is None or found[ETAG] != etag):
            msg = f"{table} entity changed since it was read"
            raise ConflictError(msg)
        stored.pop((partition, row), None)

    def query(
        self, table: str, where: str, parameters: Mapping[str, Any] | None = None
    ) -> Iterator[Entity]:
        """Yield every entity matching ``Name eq|gt @param [and ...]``, in key order."""
        clauses = [_CLAUSE.match(part.strip()) for part in where.split(" and ")]
        if not all(clauses):
            msg = f"the fake understands only 'Name eq|gt @param' clauses joined by 'and': {where}"
            raise ValueError(msg)
        wanted = [(m.group(1), m.group(2), (parameters or {})[m.group(3)]) for m in clauses if m]
        stored = self.tables.get(table, {})
        for key in sorted(stored):
            entity = stored[key]
            if all(_holds(entity.get(name), op, value) for name, op, value in wanted):
                yield self._out(entity)

    def head(
        self, table: str, where: str, parameters: Mapping[str, Any], *, size: int
    ) -> tuple[list[Entity], bool]:
        """Return the first ``size`` entities of a query and whether more follow."""
        found = list(self.query(table, where, parameters))
        return found[:size], len(found) > size

    def list_partition(self, table: str, partition: str) -> Iterator[Entity]:
        """Yield every entity of one partition, in row key order."""
        return self.query(table, "PartitionKey eq @pk", {"pk": partition})

    def page(
        self,
        table: str,
        where: str,
        parameters: Mapping[str, Any],
        *,
        size: int,
        token: str | None,
    ) -> tuple[list[Entity], str | None]:
        """Return one page of a query and the token of the next page, if any."""
        found = list(self.query(table, where, parameters))
        start = int(token or 0)
        end = start + size
        return found[start:end], (str(end) if end < len(found) else None)

    def upsert_batch(self, table: str, entities: Sequence[Mapping[str, Any]]) -> None:
        """Upsert entities one by one."""
        for entity in entities:
            self.upsert(table, entity)

    def delete_batch(self, table: str, keys: Sequence[tuple[str, str]]) -> None:
        """Delete entities by key, already-gone ones included."""
        for partition, row in keys:
            self.delete(table, partition, row)

    def _clean(self, operation: str, table: str, entity: Mapping[str, Any]) -> Entity:
        clean = {k: copy.deepcopy(v) for k, v in entity.items() if k != ETAG and v is not None}
        guard_entity(table, clean)
        if self.fail is not None:
            self.fail(operation, table, clean)
        return clean

    def _stamp(self, entity: Entity) -> Entity:
        return {**entity, ETAG: f"etag-{next(self._etags)}"}

    @staticmethod
    def _out(entity: Entity) -> Entity:
        return copy.deepcopy(entity)


def _holds(actual: Any, op: str, value: Any) -> bool:
    if op == "eq":
        return bool(actual == value)
    return actual is not None and str(actual) > str(value)


class FakeBlobs:
    """Blob Storage stand-in with the methods of ``BlobBodyStore``."""

    def __init__(self) -> None:
        self.blobs: dict[str, tuple[bytes, str]] = {}

    def put_text(self, name: str, text: str, content_type: str) -> None:
        """Write (or overwrite) a UTF-8 text blob."""
        self.blobs[name] = (text.encode("utf-8"), content_type)

    def get_text(self, name: str) -> str | None:
        """Return a text blob, or ``None`` when it does not exist."""
        found = self.blobs.get(name)
        return None if found is None else found[0].decode("utf-8")

    def delete(self, name: str) -> None:
        """Delete a blob; succeeds when it is already gone."""
        self.blobs.pop(name, None)


@dataclass(frozen=True, slots=True)
class SentJob:
    """One job a fake queue was asked to send."""

    queue: str
    job: dict[str, Any]
    delay_s: int


@dataclass(slots=True)
class FakeQueue:
    """Queue stand-in with the ``send`` and ``send_many`` of ``JobQueue``; records each job."""

    sent: list[SentJob] = field(default_factory=list)

    def send(self, queue: str, job: Mapping[str, Any], *, delay_s: int = 0) -> None:
        """Record one job."""
        self.sent.append(SentJob(queue, dict(job), delay_s))

    def send_many(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> int:
        """Record many jobs; return how many."""
        for job in jobs:
            self.send(queue, job)
        return len(jobs)


def response(
    status: int,
    body: bytes | str = b"",
    headers: Mapping[str, str] | None = None,
) -> requests.Response:
    """Build a ``requests.Response`` as the transport would hand it back."""
    built = requests.Response()
    built.status_code = status
    built._content = body.encode("utf-8") if isinstance(body, str) else body
    built.headers.update(headers or {})
    return built


@dataclass(frozen=True, slots=True)
class SentRequest:
    """One GET a fake session received."""

    url: str
    headers: dict[str, str]
    timeout: float | None


@dataclass(slots=True)
class FakeSession:
    """``requests.Session`` stand-in: ``get`` answers from a script, in order.

    Each script entry is a ``requests.Response`` or an exception to raise.
    """

    script: list[requests.Response | Exception]
    sent: list[SentRequest] = field(default_factory=list)

    def get(
        self, url: str, *, headers: Mapping[str, str], timeout: float | None = None
    ) -> requests.Response:
        """Record the request and return (or raise) the next scripted answer."""
        self.sent.append(SentRequest(url, dict(headers), timeout))
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
