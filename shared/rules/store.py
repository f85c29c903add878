"""Where blocking rules, address groups, switches and drop decisions live in Table Storage.

Table ``blockrules``: a tenant's own partition (``table_key(tenant)``) holds its rules
(``rule|<id>``), address groups (``group|<name>``), switches and the salt of its decision
hashes (``settings|...``); each user's partition (``table_key(tenant, user)``) holds that user's
rules. A sync job reads both partitions once to build the mailbox's rule set.

Table ``maildecisions``: one row per dropped message, in the partition of its mailbox, keyed by
an HMAC-SHA256 of the immutable message id under the tenant's random salt; the row carries the
HMAC of the ``internetMessageId``, the reason code, the rule id and scope, and the time. No
subject, body, address or readable id is ever written there. Dropped calendar events get the
same records in the user's ``calendar`` partition (``table_key(tenant, user, "calendar")``),
keyed by the event id, with its ``iCalUId`` in ``imid``.

Known limitations: the salt is kept in the same storage account as the decisions, so someone who
can read the account and already knows a message id can confirm that it was dropped; nobody can
recover an id from a record. Counting a scope's rules before adding one is not atomic, so two
concurrent creates can pass the limit by one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import table_key
from shared.errors import ConflictError
from shared.rules.model import TENANT_SCOPE, USER_SCOPE, RuleSet
from shared.rules.validation import (
    group_from_json,
    group_json,
    rule_from_json,
    rule_json,
    switches_from_json,
    switches_json,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from shared.adapters.tables import Entity, TableEntityStore
    from shared.rules.model import AddressGroup, Rule, Switches

RULES = "blockrules"
DECISIONS = "maildecisions"
MAIL_RECORDS = ""
EVENT_RECORDS = "calendar"
_RULE, _GROUP, _SETTINGS = "rule", "group", "settings"
_SWITCHES_ROW = table_key(_SETTINGS, "switches")
_SALT_ROW = table_key(_SETTINGS, "salt")


class _AnyName:
    """Accepts every group name: stored rules were checked when saved."""

    def __contains__(self, name: object) -> bool:
        return True


def now_iso() -> str:
    """Return the current UTC time as ISO 8601 text."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class RuleStore:
    """Reads and writes rules, groups and switches of tenants and users."""

    def __init__(self, tables: TableEntityStore) -> None:
        self._tables = tables
        self._salts: dict[str, bytes] = {}

    def list_rules(self, tenant_id: str, user_id: str | None = None) -> list[Rule]:
        """Return the rules of a tenant (or of one of its users), oldest first."""
        rows = self._tables.list_partition(RULES, _partition(tenant_id, user_id))
        found = [_rule_of(row) for row in rows if row.get("kind") == _RULE]
        return sorted(found, key=lambda rule: (rule.created_at, rule.rule_id))

    def get_rule(self, tenant_id: str, user_id: str | None, rule_id: str) -> Rule | None:
        """Return one rule, or ``None`` when the scope has no such rule."""
        row = self._tables.get(RULES, _partition(tenant_id, user_id), table_key(_RULE, rule_id))
        return _rule_of(row) if row else None

    def put_rule(self, tenant_id: str, user_id: str | None, rule: Rule) -> None:
        """Insert or replace a rule."""
        row = {
            "PartitionKey": _partition(tenant_id, user_id),
            "RowKey": table_key(_RULE, rule.rule_id),
            "kind": _RULE,
            "ruleId": rule.rule_id,
            "scope": rule.scope,
            "definition": json.dumps(rule_json(rule), ensure_ascii=False),
            "createdAt": rule.created_at or now_iso(),
            "updatedAt": now_iso(),
        }
        self._tables.upsert(RULES, row, replace=True)

    def delete_rule(self, tenant_id: str, user_id: str | None, rule_id: str) -> None:
        """Delete a rule; succeeds when it is already gone."""
        self._tables.delete(RULES, _partition(tenant_id, user_id), table_key(_RULE, rule_id))

    def list_groups(self, tenant_id: str) -> list[AddressGroup]:
        """Return a tenant's address groups by name."""
        rows = self._tables.list_partition(RULES, _partition(tenant_id, None))
        return sorted(
            (_group_of(row) for row in rows if row.get("kind") == _GROUP),
            key=lambda group: group.name,
        )

    def get_group(self, tenant_id: str, name: str) -> AddressGroup | None:
        """Return one address group, or ``None``."""
        row = self._tables.get(RULES, _partition(tenant_id, None), table_key(_GROUP, name))
        return _group_of(row) if row else None

    def put_group(self, tenant_id: str, group: AddressGroup) -> None:
        """Insert or replace an address group."""
        row = {
            "PartitionKey": _partition(tenant_id, None),
            "RowKey": table_key(_GROUP, group.name),
            "kind": _GROUP,
            "name": group.name,
            "definition": json.dumps(group_json(group), ensure_ascii=False),
            "updatedAt": now_iso(),
        }
        self._tables.upsert(RULES, row, replace=True)

    def delete_group(self, tenant_id: str, name: str) -> None:
        """Delete an address group; succeeds when it is already gone."""
        self._tables.delete(RULES, _partition(tenant_id, None), table_key(_GROUP, name))

    def get_switches(self, tenant_id: str) -> Switches:
        """Return a tenant's switches, defaults when never set."""
        row = self._tables.get(RULES, _partition(tenant_id, None), _SWITCHES_ROW)
        return switches_from_json(json.loads(row["definition"]) if row else {})

    def put_switches(self, tenant_id: str, switches: Switches) -> None:
        """Replace a tenant's switches."""
        row = {
            "PartitionKey": _partition(tenant_id, None),
            "RowKey": _SWITCHES_ROW,
            "kind": "switches",
            "definition": json.dumps(switches_json(switches)),
            "updatedAt": now_iso(),
        }
        self._tables.upsert(RULES, row, replace=True)

    def ruleset(self, tenant_id: str, user_id: str) -> RuleSet:
        """Return what applies to one mailbox: switches, groups, tenant rules, then the user's."""
        tenant_rows = list(self._tables.list_partition(RULES, _partition(tenant_id, None)))
        switches = next(
            (
                switches_from_json(json.loads(row["definition"]))
                for row in tenant_rows
                if row["RowKey"] == _SWITCHES_ROW
            ),
            None,
        )
        tenant_rules = sorted(
            (_rule_of(row) for row in tenant_rows if row.get("kind") == _RULE),
            key=lambda rule: (rule.created_at, rule.rule_id),
        )
        groups = tuple(_group_of(row) for row in tenant_rows if row.get("kind") == _GROUP)
        user_rules = self.list_rules(tenant_id, user_id)
        return RuleSet(
            switches=switches if switches is not None else switches_from_json({}),
            groups=groups,
            rules=(*tenant_rules, *user_rules),
        )

    def salt(self, tenant_id: str) -> bytes:
        """Return the tenant's random salt for decision hashes, creating it on first use."""
        cached = self._salts.get(tenant_id)
        if cached is not None:
            return cached
        partition = _partition(tenant_id, None)
        row = self._tables.get(RULES, partition, _SALT_ROW)
        if row is None:
            fresh = {
                "PartitionKey": partition,
                "RowKey": _SALT_ROW,
                "kind": "salt",
                "salt": base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
            }
            try:
                self._tables.create(RULES, fresh)
                row = fresh
            except ConflictError:
                # Another worker created it first; theirs is the one every record uses.
                row = self._tables.get(RULES, partition, _SALT_ROW) or fresh
        salt = base64.b64decode(str(row["salt"]))
        self._salts[tenant_id] = salt
        return salt


@dataclass(frozen=True, slots=True)
class MessageHasher:
    """Keyed hashes of one tenant's message ids, for decision records."""

    salt: bytes

    def item(self, item_id: str) -> str:
        """Return the HMAC of an immutable Graph message id."""
        return self._mac("item", item_id)

    def internet_id(self, internet_message_id: str) -> str:
        """Return the HMAC of an ``internetMessageId`` (angle brackets and spaces ignored)."""
        return self._mac("imid", internet_message_id.strip().strip("<>").strip().lower())

    def _mac(self, kind: str, value: str) -> str:
        data = f"{kind}\n{value}".encode("utf-8", errors="surrogatepass")
        return hmac.new(self.salt, data, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Drop:
    """One dropped message, before it is written as a decision record."""

    item_id: str
    internet_message_id: str
    reason: str
    rule: Rule | None = None


class DecisionLog:
    """Writes and finds the decision records of dropped messages (or events, by ``records``)."""

    def __init__(
        self, tables: TableEntityStore, rules: RuleStore, records: str = MAIL_RECORDS
    ) -> None:
        self._tables = tables
        self._rules = rules
        self._records = records

    def hasher(self, tenant_id: str) -> MessageHasher:
        """Return the tenant's message id hasher."""
        return MessageHasher(self._rules.salt(tenant_id))

    def record(self, tenant_id: str, user_id: str, drops: Iterable[Drop]) -> int:
        """Write one record per dropped message of a mailbox, in batches; return how many."""
        hasher = self.hasher(tenant_id)
        partition = self._partition(tenant_id, user_id)
        decided_at = now_iso()
        rows: dict[str, Entity] = {}
        for drop in drops:
            row_key = hasher.item(drop.item_id)
            rows[row_key] = {
                "PartitionKey": partition,
                "RowKey": row_key,
                "imid": hasher.internet_id(drop.internet_message_id)
                if drop.internet_message_id
                else "",
                "reason": drop.reason,
                "ruleId": drop.rule.rule_id if drop.rule else "",
                "ruleScope": drop.rule.scope if drop.rule else "",
                "decidedAt": decided_at,
            }
        if rows:
            self._tables.upsert_batch(DECISIONS, list(rows.values()))
        return len(rows)

    def find(
        self, tenant_id: str, user_id: str, *, item_id: str | None, internet_message_id: str | None
    ) -> Entity | None:
        """Return the decision record of a message of a mailbox, or ``None``."""
        hasher = self.hasher(tenant_id)
        partition = self._partition(tenant_id, user_id)
        if item_id:
            return self._tables.get(DECISIONS, partition, hasher.item(item_id))
        if internet_message_id:
            where = "PartitionKey eq @pk and imid eq @imid"
            found = self._tables.query(
                DECISIONS, where, {"pk": partition, "imid": hasher.internet_id(internet_message_id)}
            )
            return next(iter(found), None)
        return None

    def _partition(self, tenant_id: str, user_id: str) -> str:
        if not self._records:
            return table_key(tenant_id, user_id)
        return table_key(tenant_id, user_id, self._records)


def _partition(tenant_id: str, user_id: str | None) -> str:
    return table_key(tenant_id) if user_id is None else table_key(tenant_id, user_id)


def _rule_of(row: Entity) -> Rule:
    scope = str(row.get("scope") or TENANT_SCOPE)
    rule = rule_from_json(
        json.loads(row["definition"]),
        rule_id=str(row["ruleId"]),
        scope=USER_SCOPE if scope == USER_SCOPE else TENANT_SCOPE,
        groups=_AnyName(),
    )
    return replace(rule, created_at=str(row.get("createdAt") or ""))


def _group_of(row: Entity) -> AddressGroup:
    definition: dict[str, Any] = json.loads(row["definition"])
    name = str(definition.pop("name", row.get("name", "")))
    return group_from_json(name, definition)
