"""Blocking rules for the API: tenant and user rules, address groups, switches, dry run, explain.

Callers are checked by the HTTP triggers (tenant scope for admins, user scope for the user
themselves); this service always works inside the tenant and user it is given. A rule id that
is not a GUID, or that belongs to another scope or tenant, answers 404 like a missing one.
Every definition is validated whole before anything is written.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from shared.errors import ConflictError, NotFoundError, ValidationError
from shared.matching.companies import CompanyIndex
from shared.rules.decide import decide
from shared.rules.engine import CompiledRules, MessageFacts
from shared.rules.messageshape import check_graph_message
from shared.rules.model import TENANT_SCOPE, USER_SCOPE, RuleSet
from shared.rules.validation import (
    MAX_GROUPS,
    MAX_TENANT_RULES,
    MAX_USER_RULES,
    group_from_json,
    group_json,
    group_name,
    rule_from_json,
    rule_json,
    rules_from_json,
    switches_from_json,
    switches_json,
)
from shared.sync.connections import MAIL, connection_key
from shared.sync.emailrows import email_key

if TYPE_CHECKING:
    from collections.abc import Mapping

    from shared.directory.service import DirectoryService
    from shared.rules.model import AddressGroup, Rule, Switches
    from shared.rules.store import DecisionLog, RuleStore
    from shared.sync.store import EmailStore

logger = logging.getLogger(__name__)

_DRY_RUN_FIELDS = frozenset({"message", "rules", "switches", "groups"})


class RuleService:
    """Manages blocking rules and answers dry runs and explanations."""

    def __init__(
        self,
        store: RuleStore,
        decisions: DecisionLog,
        directory: DirectoryService,
        emails: EmailStore,
    ) -> None:
        self._store = store
        self._decisions = decisions
        self._directory = directory
        self._emails = emails

    def list_rules(self, tenant_id: str, user_id: str | None) -> list[dict[str, Any]]:
        """Return a scope's rules (the tenant's when ``user_id`` is None), oldest first."""
        return [_rule_view(rule) for rule in self._store.list_rules(tenant_id, user_id)]

    def get_rule(self, tenant_id: str, user_id: str | None, rule_id: str) -> dict[str, Any]:
        """Return one rule of a scope.

        Raises:
            NotFoundError: when the scope has no such rule.
        """
        return _rule_view(self._existing(tenant_id, user_id, rule_id))

    def create_rule(self, tenant_id: str, user_id: str | None, body: Any) -> dict[str, Any]:
        """Validate and add a rule under a new id.

        Raises:
            ValidationError: naming the field that breaks a rule, or when the scope is full.
        """
        rule = self._validated(tenant_id, user_id, body, str(uuid.uuid4()))
        limit = MAX_TENANT_RULES if user_id is None else MAX_USER_RULES
        field, rule_text = "body", f"a scope holds at most {limit} rules; delete one first"
        if len(self._store.list_rules(tenant_id, user_id)) >= limit:
            raise ValidationError(field, rule_text)
        self._store.put_rule(tenant_id, user_id, rule)
        # Creations racing past the first count are counted again once written: a rule that
        # finds the scope over its limit takes itself back, so the limit holds after any race.
        if len(self._store.list_rules(tenant_id, user_id)) > limit:
            self._store.delete_rule(tenant_id, user_id, rule.rule_id)
            raise ValidationError(field, rule_text)
        logger.info("blocking rule created", extra=_log(tenant_id, user_id, rule.rule_id))
        return self.get_rule(tenant_id, user_id, rule.rule_id)

    def replace_rule(
        self, tenant_id: str, user_id: str | None, rule_id: str, body: Any
    ) -> dict[str, Any]:
        """Validate and replace an existing rule, keeping its id and creation time.

        Raises:
            NotFoundError: when the scope has no such rule.
            ValidationError: naming the field that breaks a rule.
        """
        stored = self._existing(tenant_id, user_id, rule_id)
        rule = self._validated(tenant_id, user_id, body, stored.rule_id)
        self._store.put_rule(tenant_id, user_id, replace(rule, created_at=stored.created_at))
        logger.info("blocking rule replaced", extra=_log(tenant_id, user_id, rule_id))
        return self.get_rule(tenant_id, user_id, stored.rule_id)

    def delete_rule(self, tenant_id: str, user_id: str | None, rule_id: str) -> None:
        """Delete a rule.

        Raises:
            NotFoundError: when the scope has no such rule.
        """
        stored = self._existing(tenant_id, user_id, rule_id)
        self._store.delete_rule(tenant_id, user_id, stored.rule_id)
        logger.info("blocking rule deleted", extra=_log(tenant_id, user_id, rule_id))

    def list_groups(self, tenant_id: str) -> list[dict[str, Any]]:
        """Return the tenant's address groups."""
        return [group_json(group) for group in self._store.list_groups(tenant_id)]

    def get_group(self, tenant_id: str, name: str) -> dict[str, Any]:
        """Return one address group.

        Raises:
            NotFoundError: when the tenant has no group of that name.
        """
        return group_json(self._existing_group(tenant_id, name))

    def put_group(self, tenant_id: str, name: str, body: Any) -> dict[str, Any]:
        """Create or replace an address group.

        Raises:
            ValidationError: when the name or an address breaks a rule, or there are too many.
        """
        group = group_from_json(name, body)
        names = {known.name for known in self._store.list_groups(tenant_id)}
        field, rule = "name", f"a tenant holds at most {MAX_GROUPS} address groups"
        if group.name not in names and len(names) >= MAX_GROUPS:
            raise ValidationError(field, rule)
        self._store.put_group(tenant_id, group)
        # As for rules: a new group that finds the tenant over its limit once written goes.
        if group.name not in names and len(self._store.list_groups(tenant_id)) > MAX_GROUPS:
            self._store.delete_group(tenant_id, group.name)
            raise ValidationError(field, rule)
        logger.info("address group saved", extra={"tenant_id": tenant_id})
        return group_json(group)

    def delete_group(self, tenant_id: str, name: str) -> None:
        """Delete an address group no tenant rule names.

        Raises:
            NotFoundError: when the tenant has no group of that name.
            ConflictError: when a tenant rule still names the group.
        """
        group = self._existing_group(tenant_id, name)
        users = [r.rule_id for r in self._store.list_rules(tenant_id) if group.name in r.groups]
        if users:
            message = f"address group is named by {len(users)} tenant rule(s): {', '.join(users)}"
            raise ConflictError(message)
        self._store.delete_group(tenant_id, group.name)
        logger.info("address group deleted", extra={"tenant_id": tenant_id})

    def get_switches(self, tenant_id: str) -> dict[str, bool]:
        """Return the tenant's built-in switches."""
        return switches_json(self._store.get_switches(tenant_id))

    def put_switches(self, tenant_id: str, body: Any) -> dict[str, bool]:
        """Replace the tenant's switches; a switch left out takes its default.

        Raises:
            ValidationError: when a switch is unknown or not true or false.
        """
        switches = switches_from_json(body)
        self._store.put_switches(tenant_id, switches)
        logger.info("blocking switches saved", extra={"tenant_id": tenant_id})
        return switches_json(switches)

    def compiled_for(self, tenant_id: str, user_id: str) -> CompiledRules:
        """Return the mailbox's switches and rules, compiled for a sync job."""
        return CompiledRules(self._store.ruleset(tenant_id, user_id))

    def dry_run(
        self,
        tenant_id: str,
        body: Mapping[str, Any],
        *,
        portfolio: frozenset[str] | None = None,
    ) -> dict[str, Any]:
        """Decide a Graph-shaped message against posted (or saved) rules, storing nothing.

        The body holds ``message`` and optionally ``rules`` (a list of definitions; the saved
        tenant rules when left out), ``switches`` and ``groups`` (``{name: {"addresses"}}``,
        over the saved groups). A caller who sees only some companies passes them as
        ``portfolio``: the answer names only those, and stored threads are not looked at, so
        the dry run tells nothing of mail outside the portfolio.

        Raises:
            ValidationError: naming the field that breaks a rule.
        """
        for key in body:
            if key not in _DRY_RUN_FIELDS:
                raise ValidationError(key, "is not a known field")
        message = body.get("message")
        if not isinstance(message, dict):
            field = "message"
            raise ValidationError(field, "must be a JSON object shaped like a Graph message")
        check_graph_message(message)
        ruleset = self._dry_run_rules(tenant_id, body)
        compiled = CompiledRules(ruleset)
        thread = self._thread(tenant_id) if portfolio is None else None
        outcome = decide(message, self._index(tenant_id), compiled, thread=thread)
        companies = outcome.company_ids if portfolio is None else outcome.company_ids & portfolio
        return {
            "decision": "keep" if outcome.keep else "drop",
            "reason": outcome.reason,
            "companyIds": sorted(companies),
            "rule": _rule_ref(outcome.rule, with_name=True),
            "matchingRules": [
                _rule_ref(rule, with_name=True)
                for rule in compiled.matching(MessageFacts.of(message))
            ],
            "switches": switches_json(ruleset.switches),
        }

    def explain(
        self, tenant_id: str, user_id: str, *, message_id: str | None, internet_id: str | None
    ) -> dict[str, Any]:
        """Tell a user why one message of their mailbox was kept or dropped.

        Raises:
            ValidationError: unless exactly one of the two ids is given.
            NotFoundError: when sync recorded nothing for that message in this mailbox.
        """
        if bool(message_id) == bool(internet_id):
            field = "messageId"
            raise ValidationError(field, "give exactly one of messageId or internetMessageId")
        kept = self._kept(tenant_id, user_id, message_id, internet_id)
        if kept is not None:
            return kept
        record = self._decisions.find(
            tenant_id, user_id, item_id=message_id, internet_message_id=internet_id
        )
        if record is None:
            message = "no sync decision is recorded for this message in your mailbox"
            raise NotFoundError(message)
        return self._dropped_view(tenant_id, user_id, record)

    def _kept(
        self, tenant_id: str, user_id: str, message_id: str | None, internet_id: str | None
    ) -> dict[str, Any] | None:
        if message_id:
            item = self._emails.item(connection_key(tenant_id, user_id, MAIL), message_id)
            key = str(item["emailKey"]) if item else None
        else:
            key = email_key(tenant_id, internet_id, "", "")
            holders = self._emails.holders(tenant_id, key)
            key = key if any(row.get("userId") == user_id for row in holders) else None
        if key is None:
            return None
        return {"decision": "kept", "reason": "stored", "emailId": key, "rule": None}

    def _dropped_view(
        self, tenant_id: str, user_id: str, record: Mapping[str, Any]
    ) -> dict[str, Any]:
        rule_id, scope = str(record.get("ruleId") or ""), str(record.get("ruleScope") or "")
        rule: dict[str, Any] | None = None
        if rule_id:
            rule = {"id": rule_id, "scope": scope}
            # A user sees the names of their own rules; a tenant rule is named by id only.
            own = self._store.get_rule(tenant_id, user_id, rule_id) if scope == USER_SCOPE else None
            if own is not None:
                rule["name"] = own.name
        return {
            "decision": "dropped",
            "reason": record.get("reason"),
            "rule": rule,
            "decidedAt": record.get("decidedAt"),
        }

    def _dry_run_rules(self, tenant_id: str, body: Mapping[str, Any]) -> RuleSet:
        groups = {group.name: group for group in self._store.list_groups(tenant_id)}
        for group in _posted_groups(body.get("groups", {})):
            groups[group.name] = group
        if "rules" in body:
            rules = rules_from_json(body["rules"], scope=TENANT_SCOPE, groups=groups, field="rules")
        else:
            rules = self._store.list_rules(tenant_id)
        switches: Switches = (
            switches_from_json(body["switches"], "switches")
            if "switches" in body
            else self._store.get_switches(tenant_id)
        )
        return RuleSet(switches=switches, groups=tuple(groups.values()), rules=tuple(rules))

    def _index(self, tenant_id: str) -> CompanyIndex:
        tenant = self._directory.get_tenant(tenant_id)
        own = tenant.own_domains if tenant else ()
        return CompanyIndex.build(self._directory.company_match_data(tenant_id), own)

    def _thread(self, tenant_id: str) -> Any:
        return lambda ids: self._emails.thread_companies(tenant_id, ids)

    def _validated(self, tenant_id: str, user_id: str | None, body: Any, rule_id: str) -> Rule:
        names = {group.name for group in self._store.list_groups(tenant_id)}
        scope = TENANT_SCOPE if user_id is None else USER_SCOPE
        return rule_from_json(body, rule_id=rule_id, scope=scope, groups=names)

    def _existing(self, tenant_id: str, user_id: str | None, rule_id: str) -> Rule:
        found = None
        if _is_guid(rule_id):
            found = self._store.get_rule(tenant_id, user_id, rule_id.strip().lower())
        if found is None:
            message = "no such rule in this scope"
            raise NotFoundError(message)
        return found

    def _existing_group(self, tenant_id: str, name: str) -> AddressGroup:
        try:
            found = self._store.get_group(tenant_id, group_name(name))
        except ValidationError:
            found = None
        if found is None:
            message = "no such address group in this tenant"
            raise NotFoundError(message)
        return found


def _posted_groups(value: Any) -> list[AddressGroup]:
    if not isinstance(value, dict):
        field = "groups"
        raise ValidationError(field, "must be an object of group name to group")
    return [
        group_from_json(name, definition, f"groups.{name}") for name, definition in value.items()
    ]


def _rule_view(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.rule_id,
        "scope": rule.scope,
        "createdAt": rule.created_at,
        **rule_json(rule),
    }


def _rule_ref(rule: Rule | None, *, with_name: bool) -> dict[str, Any] | None:
    if rule is None:
        return None
    ref = {"id": rule.rule_id, "scope": rule.scope}
    if with_name:
        ref["name"] = rule.name
    return ref


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value.strip())
    except ValueError:
        return False
    return len(value.strip()) == 36


def _log(tenant_id: str, user_id: str | None, rule_id: str) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "user_id": user_id or "", "rule_id": rule_id}
