"""Table Storage adapter: the only module that talks to ``azure-data-tables``.

Entities go in and come out as plain dicts. A stored entity carries its ETag under the key
:data:`ETAG`, which is stripped again on write; conditional writes take it back as ``etag=``.
Every write passes :func:`shared.adapters.tablelimits.guard_entity` first.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableServiceClient, TableTransactionError, UpdateMode

from shared.adapters.tablelimits import guard_entity
from shared.errors import ConflictError, NotFoundError, TransientError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from azure.data.tables import TableClient

Entity = dict[str, Any]
ETAG = "_etag"
PAGE_RULE = "must be a token from a previous page of the same list"
MAX_TOKEN_PART = 2048
"""Longest part of a continuation a page token may carry: two 1 KiB keys, escaped."""

TABLES = (
    "tenants",
    "users",
    "companies",
    "companycontacts",
    "connections",
    "consentstates",
    "cursors",
    "emails",
    "emailholders",
    "companyemails",
    "tenantemails",
    "mailboxitems",
    "pendingremovals",
    "leases",
    "events",
    "eventholders",
    "companyevents",
    "calendaritems",
    "calendarseries",
    "blockrules",
    "maildecisions",
    "permissions",
    "companyowners",
    "auditlog",
    "emailtombstones",
    "eventtombstones",
    "purgejobs",
    "outbox",
    "sendcounts",
)
"""Every table the product uses; created on start-up by :meth:`TableEntityStore.ensure_tables`."""


class TableEntityStore:
    """Reads and writes entities, turning SDK errors into the product's own."""

    def __init__(self, service: TableServiceClient) -> None:
        self._service = service
        self._clients: dict[str, TableClient] = {}

    def ensure_tables(self, names: Sequence[str] = TABLES) -> None:
        """Create the given tables when they do not exist yet."""
        for name in names:
            self._service.create_table_if_not_exists(name)

    def get(self, table: str, partition: str, row: str) -> Entity | None:
        """Return one entity with its ETag, or ``None`` when it does not exist."""
        try:
            found = self._client(table).get_entity(partition, row)
        except ResourceNotFoundError:
            return None
        except AzureError as error:
            msg = f"reading {table} failed"
            raise TransientError(msg) from error
        return _with_etag(found)

    def upsert(self, table: str, entity: Mapping[str, Any], *, replace: bool = False) -> None:
        """Insert or merge (or replace) an entity unconditionally."""
        clean = _clean(table, entity)
        mode = UpdateMode.REPLACE if replace else UpdateMode.MERGE
        try:
            self._client(table).upsert_entity(clean, mode=mode)
        except AzureError as error:
            msg = f"writing {table} failed"
            raise TransientError(msg) from error

    def create(self, table: str, entity: Mapping[str, Any]) -> str:
        """Insert an entity that must not exist yet; return its new ETag.

        Raises:
            ConflictError: when an entity with the same keys exists.
        """
        clean = _clean(table, entity)
        try:
            metadata = self._client(table).create_entity(clean)
        except ResourceExistsError as error:
            msg = f"{table} entity already exists"
            raise ConflictError(msg) from error
        except AzureError as error:
            msg = f"writing {table} failed"
            raise TransientError(msg) from error
        return str(metadata.get("etag"))

    def update(self, table: str, entity: Mapping[str, Any], *, etag: str | None) -> str:
        """Replace an entity only if unchanged since read (or absent if no ETag); return the ETag.

        Raises:
            ConflictError: when another writer changed or created it first.
        """
        if etag is None:
            return self.create(table, entity)
        clean = _clean(table, entity)
        try:
            metadata = self._client(table).update_entity(
                clean,
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError) as error:
            msg = f"{table} entity changed since it was read"
            raise ConflictError(msg) from error
        except AzureError as error:
            msg = f"writing {table} failed"
            raise TransientError(msg) from error
        return str(metadata.get("etag"))

    def delete(self, table: str, partition: str, row: str, *, etag: str | None = None) -> None:
        """Delete an entity; succeeds when it is already gone unless an ETag is given.

        Raises:
            ConflictError: when an ETag is given and the entity changed or vanished.
        """
        options: dict[str, Any] = {}
        if etag is not None:
            options = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        try:
            self._client(table).delete_entity(partition, row, **options)
        except (ResourceModifiedError, ResourceNotFoundError) as error:
            msg = f"{table} entity changed since it was read"
            raise ConflictError(msg) from error
        except AzureError as error:
            msg = f"deleting from {table} failed"
            raise TransientError(msg) from error

    def query(
        self, table: str, where: str, parameters: Mapping[str, Any] | None = None
    ) -> Iterator[Entity]:
        """Yield every entity matching an OData filter built with ``@name`` parameters."""
        try:
            found = self._client(table).query_entities(where, parameters=dict(parameters or {}))
            for entity in found:
                yield _with_etag(entity)
        except AzureError as error:
            msg = f"querying {table} failed"
            raise TransientError(msg) from error

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
        select: Sequence[str] | None = None,
    ) -> tuple[list[Entity], str | None]:
        """Return one page of a query and the opaque token of the next page, if any.

        With ``select``, the entities carry only those properties (and their ETag).

        Raises:
            ValidationError: when the continuation token is not one this store issued.
        """
        query = _fingerprint(table, where, parameters)
        pager = self._client(table).query_entities(
            where,
            parameters=dict(parameters),
            results_per_page=size,
            select=list(select) if select else None,
        )
        try:
            pages = pager.by_page(continuation_token=_decode_token(token, query))
            items = [_with_etag(entity) for entity in next(pages, [])]
        except AzureError as error:
            msg = f"querying {table} failed"
            raise TransientError(msg) from error
        # The SDK types by_page() as a plain iterator; its pager carries the token.
        return items, _encode_token(getattr(pages, "continuation_token", None), query)

    def head(
        self, table: str, where: str, parameters: Mapping[str, Any], *, size: int
    ) -> tuple[list[Entity], bool]:
        """Return the first ``size`` entities of a query in key order, and whether more follow.

        Unlike :meth:`page`, this follows the service's continuations until it has ``size``
        entities or the query is exhausted, so a short page never hides rows.
        """
        try:
            found = self._client(table).query_entities(
                where, parameters=dict(parameters), results_per_page=min(size + 1, 1000)
            )
            items = [_with_etag(entity) for entity in itertools.islice(found, size + 1)]
        except AzureError as error:
            msg = f"querying {table} failed"
            raise TransientError(msg) from error
        return items[:size], len(items) > size

    def upsert_batch(self, table: str, entities: Sequence[Mapping[str, Any]]) -> None:
        """Upsert entities of one partition in transactions of at most 100."""
        clean = [_clean(table, entity) for entity in entities]
        for start in range(0, len(clean), 100):
            operations: list[Any] = [("upsert", e) for e in clean[start : start + 100]]
            try:
                self._client(table).submit_transaction(operations)
            except (TableTransactionError, AzureError) as error:
                msg = f"batch write to {table} failed"
                raise TransientError(msg) from error

    def write_batch(
        self, table: str, writes: Sequence[tuple[Mapping[str, Any], str | None]]
    ) -> list[str]:
        """Create (no ETag) or replace-if-unchanged entities of one partition in one transaction.

        At most 100 entities, all in one partition. The transaction is all or nothing, so a
        conditional write that fails leaves every entity as it was.

        Returns:
            The new ETag of each entity, in the order given.

        Raises:
            ConflictError: when any entity was created or changed by another writer first.
        """
        operations: list[Any] = [_conditional(_clean(table, e), etag) for e, etag in writes]
        if not operations:
            return []
        try:
            results = self._client(table).submit_transaction(operations)
        except TableTransactionError as error:
            if error.status_code in {404, 409, 412}:
                msg = f"{table} entity changed since it was read (batch of {len(operations)})"
                raise ConflictError(msg) from error
            msg = f"batch write to {table} failed"
            raise TransientError(msg) from error
        except AzureError as error:
            msg = f"batch write to {table} failed"
            raise TransientError(msg) from error
        return [str(result.get("etag")) for result in results]

    def delete_batch(self, table: str, keys: Sequence[tuple[str, str]]) -> None:
        """Delete entities by key, already-gone ones included, in transactions per partition.

        Keys are grouped by partition into transactions of at most 100. A transaction fails as
        a whole when one of its entities is already gone (a repeat after a crash, say); its
        keys are then deleted one by one, which tolerates that.
        """
        by_partition: dict[str, list[str]] = {}
        for partition, row in dict.fromkeys(keys):
            by_partition.setdefault(partition, []).append(row)
        for partition, rows in by_partition.items():
            for start in range(0, len(rows), 100):
                chunk = rows[start : start + 100]
                operations: list[Any] = [
                    ("delete", {"PartitionKey": partition, "RowKey": row}) for row in chunk
                ]
                try:
                    self._client(table).submit_transaction(operations)
                except (TableTransactionError, AzureError):
                    for row in chunk:
                        self.delete(table, partition, row)

    def _client(self, table: str) -> TableClient:
        client = self._clients.get(table)
        if client is None:
            client = self._service.get_table_client(table)
            self._clients[table] = client
        return client


def _conditional(entity: Entity, etag: str | None) -> tuple[Any, ...]:
    """Return a transaction operation: create without an ETag, else replace if unchanged."""
    if etag is None:
        return ("create", entity)
    condition = {
        "mode": UpdateMode.REPLACE,
        "etag": etag,
        "match_condition": MatchConditions.IfNotModified,
    }
    return ("update", entity, condition)


def _clean(table: str, entity: Mapping[str, Any]) -> Entity:
    clean = {key: value for key, value in entity.items() if key != ETAG and value is not None}
    guard_entity(table, clean)
    return clean


def _with_etag(entity: Any) -> Entity:
    result: Entity = dict(entity)
    result[ETAG] = entity.metadata.get("etag")
    return result


def _fingerprint(table: str, where: str, parameters: Mapping[str, Any]) -> str:
    """Name one query, so a page token works only for the query that issued it."""
    text = json.dumps([table, where, {k: str(v) for k, v in parameters.items()}], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def encode_page_token(content: Mapping[str, Any]) -> str:
    """Wrap what a list needs to continue as an opaque, URL-safe continuation token."""
    raw = json.dumps(content, sort_keys=True).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_page_token(token: str) -> dict[str, Any]:
    """Unwrap a continuation token made by :func:`encode_page_token`.

    Raises:
        ValidationError: naming ``continuationToken`` when the token is not base64 of a JSON
            object; the caller checks the object's content.
    """
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeEncodeError, RecursionError) as error:
        raise ValidationError(field="continuationToken", rule=PAGE_RULE) from error
    if not isinstance(decoded, dict):
        raise ValidationError(field="continuationToken", rule=PAGE_RULE)
    return decoded


def _encode_token(token: Any, query: str) -> str | None:
    return encode_page_token({"q": query, "next": token}) if token else None


def _decode_token(token: str | None, query: str) -> Any:
    """Read a page token: the service's continuation, checked to belong to this query.

    Raises:
        ValidationError: naming ``continuationToken`` when the token is not one this query's
            pages issued, or its parts could not be keys.
    """
    if not token:
        return None
    decoded = decode_page_token(token)
    inner = decoded.get("next")
    if decoded.get("q") != query or not isinstance(inner, dict):
        raise ValidationError(field="continuationToken", rule=PAGE_RULE)
    if not all(_is_key(v) for v in inner.values()):
        raise ValidationError(field="continuationToken", rule=PAGE_RULE)
    return inner


def _is_key(value: Any) -> bool:
    """Tell whether a token part could be a key the service issued: short text, no surrogates."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_TOKEN_PART
        and value.encode("utf-8", errors="replace") == value.encode("utf-8", errors="surrogatepass")
    )


__all__ = ["ETAG", "TABLES", "Entity", "NotFoundError", "TableEntityStore"]
