"""Unit tests for shared.rules.validation: every bad definition is refused naming its field."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import ValidationError
from shared.rules.model import ContentCondition, ParticipantCondition
from shared.rules.validation import (
    MAX_CONDITIONS,
    group_from_json,
    rule_from_json,
    rule_json,
    rules_from_json,
    switches_from_json,
)

GROUPS = {"hr"}


def definition(*conditions: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": "Block", "conditions": list(conditions), **fields}


def participant(**fields: Any) -> dict[str, Any]:
    return {"type": "participant", "role": "any", **fields}


def content(**fields: Any) -> dict[str, Any]:
    return {"type": "content", "field": "subject", "phrase": "pension", **fields}


def refused(body: Any) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        rule_from_json(body, rule_id="r", scope="tenant", groups=GROUPS)
    return caught.value.field, caught.value.rule


def test_rule_from_json_normalises_addresses_domains_and_phrases():
    """Addresses and domains are stored normalised, phrases with white space collapsed."""
    body = definition(
        participant(
            addresses=['"Doe, Jane" <Jane.Doe@ACME.example>'],
            domains=["@Bücher.Example."],
            groups=["HR"],
        ),
        content(phrase="  pension \n fund "),
        match="any",
    )
    rule = rule_from_json(body, rule_id="r", scope="tenant", groups=GROUPS)
    first, second = rule.conditions
    assert first == ParticipantCondition(
        "any", ("jane.doe@acme.example",), ("xn--bcher-kva.example",), ("hr",)
    )
    assert second == ContentCondition("subject", "pension fund")
    assert rule.match == "any"
    assert rule_from_json(rule_json(rule), rule_id="r", scope="tenant", groups=GROUPS) == rule


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        (definition(), "conditions"),
        ({"conditions": [content()]}, "name"),
        (definition(content(), name="  "), "name"),
        (definition(content(), match="xor"), "match"),
        (definition(content(), action="tag"), "action"),
        (definition(content(), enabled="yes"), "enabled"),
        (definition(content(), colour="red"), "colour"),
        (definition({"type": "attachment"}), "conditions[0].type"),
        (definition(content(), content(phrase="")), "conditions[1].phrase"),
        (definition(content(phrase=7)), "conditions[0].phrase"),
        (definition(content(phrase="x" * 201)), "conditions[0].phrase"),
        (definition(content(field="headers")), "conditions[0].field"),
        (definition(content(negate="no")), "conditions[0].negate"),
        (definition(content(negat=True)), "conditions[0].negat"),
        (definition(participant()), "conditions[0].addresses"),
        (definition(participant(role="cc", domains=["a.example"])), "conditions[0].role"),
        (definition(participant(addresses=["not an address"])), "conditions[0].addresses[0]"),
        (
            definition(participant(addresses=["Doe, Jane <j@a.example>"])),
            "conditions[0].addresses[0]",
        ),
        (definition(participant(domains=["a.example", "no_domain"])), "conditions[0].domains[1]"),
        (definition(participant(domains="a.example")), "conditions[0].domains"),
        (definition(participant(groups=["finance"])), "conditions[0].groups[0]"),
        (definition(participant(groups=["bad name!"])), "conditions[0].groups[0]"),
    ],
)
def test_rule_from_json_refuses_bad_definitions_naming_the_field(body: Any, field: str):
    """Each bad definition is refused with the path of the offending field."""
    assert refused(body)[0] == field


def test_rule_from_json_refuses_too_many_conditions_and_entries():
    """More than the allowed conditions, or entries in one condition, are refused."""
    many = definition(*[content()] * (MAX_CONDITIONS + 1))
    assert refused(many)[0] == "conditions"
    crowded = definition(participant(domains=[f"d{n}.example" for n in range(501)]))
    assert refused(crowded)[0] == "conditions[0].domains"


def test_rules_from_json_names_the_rule_position():
    """In a list of rules the field path starts with the rule's position."""
    with pytest.raises(ValidationError) as caught:
        rules_from_json(
            [definition(content()), definition(content(phrase=""))],
            scope="tenant",
            groups=GROUPS,
            field="rules",
        )
    assert caught.value.field == "rules[1].conditions[0].phrase"


def test_group_from_json_validates_name_and_addresses():
    """A group needs a simple name and valid addresses, which are normalised."""
    group = group_from_json("Customer-HR", {"addresses": ["HR@Acme.example", "hr@acme.example"]})
    assert (group.name, group.addresses) == ("customer-hr", ("hr@acme.example",))
    with pytest.raises(ValidationError) as caught:
        group_from_json("hr", {"addresses": ["hr@acme.example", "nope"]})
    assert caught.value.field == "addresses[1]"
    with pytest.raises(ValidationError) as caught:
        group_from_json("h r", {"addresses": ["hr@acme.example"]})
    assert caught.value.field == "name"
    with pytest.raises(ValidationError) as caught:
        group_from_json("hr", {"addresses": []})
    assert caught.value.field == "addresses"


def test_switches_from_json_defaults_and_refusals():
    """Switches left out take defaults; unknown switches and non-booleans are refused."""
    switches = switches_from_json({"bulkMail": True})
    assert (switches.internal_only, switches.bulk_mail, switches.automatic_replies) == (
        True,
        True,
        False,
    )
    for body, field in (({"bulkMail": 1}, "bulkMail"), ({"spam": True}, "spam"), ([], "body")):
        with pytest.raises(ValidationError) as caught:
            switches_from_json(body)
        assert caught.value.field == field
