"""Unit tests for shared.rules.service and shared.rules.store over the in-memory table fake."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.directory.service import DirectoryService
from shared.errors import ConflictError, NotFoundError, ValidationError
from shared.rules.model import USER_SCOPE
from shared.rules.service import RuleService
from shared.rules.store import DECISIONS, DecisionLog, Drop, RuleStore
from shared.sync.store import EmailStore
from tests.unit.fakes import FakeBlobs, FakeTables

TENANT, OTHER = "tenant-1", "tenant-2"
ALICE, BOB = "user-a", "user-b"
PENSION = {"type": "content", "field": "subjectOrBody", "phrase": "pension"}


def world() -> tuple[RuleService, FakeTables, RuleStore]:
    tables = FakeTables()
    directory = DirectoryService(tables)  # type: ignore[arg-type]
    directory.upsert_tenant(TENANT, {"name": "T", "ownDomains": ["vendor.example"]})
    directory.create_company(TENANT, {"name": "Acme", "domains": ["acme.example"]})
    store = RuleStore(tables)  # type: ignore[arg-type]
    emails = EmailStore(tables, FakeBlobs())  # type: ignore[arg-type]
    service = RuleService(store, DecisionLog(tables, store), directory, emails)  # type: ignore[arg-type]
    return service, tables, store


def rule_body(*conditions: dict[str, Any], name: str = "Block") -> dict[str, Any]:
    return {"name": name, "conditions": list(conditions)}


def test_tenant_and_user_rules_are_separate_scopes():
    """A user's rule is invisible to the tenant list, other users and other tenants (404)."""
    # GIVEN a tenant rule and one of Alice's rules
    service, _, _ = world()
    tenant_rule = service.create_rule(TENANT, None, rule_body(PENSION, name="tenant"))
    own = service.create_rule(TENANT, ALICE, rule_body(PENSION, name="mine"))

    # WHEN each scope is listed and Alice's rule is asked for elsewhere
    # THEN each scope holds only its own rule, and foreign lookups answer 404
    assert [r["name"] for r in service.list_rules(TENANT, None)] == ["tenant"]
    assert [r["name"] for r in service.list_rules(TENANT, ALICE)] == ["mine"]
    assert own["scope"] == USER_SCOPE
    assert tenant_rule["scope"] == "tenant"
    for tenant, user in ((TENANT, BOB), (TENANT, None), (OTHER, ALICE)):
        with pytest.raises(NotFoundError):
            service.get_rule(tenant, user, own["id"])
    with pytest.raises(NotFoundError):
        service.get_rule(TENANT, None, "not-a-guid' or 'a'='a")


def test_replace_keeps_id_and_creation_and_delete_removes():
    """Replacing a rule keeps its id and creation time; deleting it makes it 404."""
    service, _, _ = world()
    created = service.create_rule(TENANT, None, rule_body(PENSION, name="one"))
    replaced = service.replace_rule(TENANT, None, created["id"], rule_body(PENSION, name="two"))
    assert (replaced["id"], replaced["createdAt"], replaced["name"]) == (
        created["id"],
        created["createdAt"],
        "two",
    )
    service.delete_rule(TENANT, None, created["id"])
    with pytest.raises(NotFoundError):
        service.delete_rule(TENANT, None, created["id"])


def test_bad_definition_writes_nothing():
    """A refused definition leaves the scope unchanged."""
    service, _, _ = world()
    with pytest.raises(ValidationError) as caught:
        service.create_rule(TENANT, None, rule_body(PENSION, {"type": "content", "phrase": "x"}))
    assert caught.value.field == "conditions[1].field"
    assert service.list_rules(TENANT, None) == []


def test_group_in_use_cannot_be_deleted_and_unknown_group_is_refused():
    """A rule naming a missing group is refused; a group a tenant rule names is kept (409)."""
    service, _, _ = world()
    hr = {"type": "participant", "role": "sender", "groups": ["hr"]}
    with pytest.raises(ValidationError) as caught:
        service.create_rule(TENANT, None, rule_body(hr))
    assert caught.value.field == "conditions[0].groups[0]"

    service.put_group(TENANT, "hr", {"addresses": ["hr@acme.example"]})
    created = service.create_rule(TENANT, None, rule_body(hr))
    with pytest.raises(ConflictError):
        service.delete_group(TENANT, "hr")
    service.delete_rule(TENANT, None, created["id"])
    service.delete_group(TENANT, "hr")
    assert service.list_groups(TENANT) == []


def test_ruleset_orders_tenant_rules_before_user_rules():
    """A mailbox's rule set holds the switches, the tenant's rules, then the user's."""
    service, _, store = world()
    service.put_switches(TENANT, {"bulkMail": True})
    service.create_rule(TENANT, ALICE, rule_body(PENSION, name="mine"))
    service.create_rule(TENANT, None, rule_body(PENSION, name="tenant"))
    ruleset = store.ruleset(TENANT, ALICE)
    assert [rule.name for rule in ruleset.rules] == ["tenant", "mine"]
    assert ruleset.switches.bulk_mail is True
    assert [rule.name for rule in store.ruleset(TENANT, BOB).rules] == ["tenant"]


def test_decision_records_hold_no_readable_id_or_content():
    """A decision record holds keyed hashes, the reason, the rule and the time only."""
    # GIVEN a dropped message
    _service, tables, store = world()
    log = DecisionLog(tables, store)  # type: ignore[arg-type]
    log.record(TENANT, ALICE, [Drop("AAMkAD=item", "<m1@acme.example>", "no_customer")])

    # WHEN the records are read raw
    (row,) = tables.rows(DECISIONS)

    # THEN no id appears in clear, and both ids find it again
    text = json.dumps(row)
    assert "AAMkAD" not in text
    assert "acme" not in text
    fields = set(row) - {"_etag"}
    assert fields == {
        "PartitionKey",
        "RowKey",
        "imid",
        "reason",
        "ruleId",
        "ruleScope",
        "decidedAt",
    }
    for ids in ({"item_id": "AAMkAD=item"}, {"internet_message_id": "<M1@acme.example>"}):
        found = log.find(TENANT, ALICE, **{"item_id": None, "internet_message_id": None, **ids})
        assert found is not None
        assert found["reason"] == "no_customer"


def test_decision_hashes_differ_between_tenants():
    """The same message id hashes differently in two tenants (per-tenant salt)."""
    _, tables, store = world()
    log = DecisionLog(tables, store)  # type: ignore[arg-type]
    assert log.hasher(TENANT).item("x") != log.hasher(OTHER).item("x")


def test_explain_dropped_by_rule_names_own_rule_only():
    """Explain names a user's own rule; a tenant rule is given by id and scope only."""
    service, tables, store = world()
    tenant_rule = service.create_rule(TENANT, None, rule_body(PENSION, name="tenant secret"))
    own_rule = service.create_rule(TENANT, ALICE, rule_body(PENSION, name="mine"))
    log = DecisionLog(tables, store)  # type: ignore[arg-type]
    by_tenant = store.get_rule(TENANT, None, tenant_rule["id"])
    by_user = store.get_rule(TENANT, ALICE, own_rule["id"])
    log.record(TENANT, ALICE, [Drop("m1", "", "rule", by_tenant), Drop("m2", "", "rule", by_user)])

    first = service.explain(TENANT, ALICE, message_id="m1", internet_id=None)
    second = service.explain(TENANT, ALICE, message_id="m2", internet_id=None)

    assert first["decision"] == "dropped"
    assert first["rule"] == {"id": tenant_rule["id"], "scope": "tenant"}
    assert second["rule"] == {"id": own_rule["id"], "scope": "user", "name": "mine"}
    with pytest.raises(NotFoundError):
        service.explain(TENANT, BOB, message_id="m1", internet_id=None)
    with pytest.raises(ValidationError):
        service.explain(TENANT, ALICE, message_id=None, internet_id=None)


def test_dry_run_reports_decision_and_every_matching_rule():
    """A dry run decides with posted rules and lists each rule that matches, storing nothing."""
    service, tables, _ = world()
    message = {
        "subject": "Your pension",
        "from": {"emailAddress": {"address": "hr@acme.example"}},
        "toRecipients": [{"emailAddress": {"address": "alice@vendor.example"}}],
    }
    body = {
        "message": message,
        "rules": [
            rule_body({"type": "participant", "role": "sender", "groups": ["hr"]}, PENSION),
            rule_body(PENSION, name="second"),
        ],
        "groups": {"hr": {"addresses": ["hr@acme.example"]}},
    }
    answer = service.dry_run(TENANT, body)
    assert answer["decision"] == "drop"
    assert answer["reason"] == "rule"
    assert answer["rule"] == {"id": "rules[0]", "scope": "tenant", "name": "Block"}
    assert [r["name"] for r in answer["matchingRules"]] == ["Block", "second"]
    assert service.list_rules(TENANT, None) == []
    assert tables.rows(DECISIONS) == []

    kept = service.dry_run(TENANT, {"message": {**message, "subject": "Hi"}, "rules": []})
    assert (kept["decision"], kept["reason"], len(kept["companyIds"])) == ("keep", "customer", 1)
