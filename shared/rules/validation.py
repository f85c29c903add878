"""Build rules, address groups and switches from API JSON, refusing every bad definition.

Each refusal is a :class:`~shared.errors.ValidationError` naming the field by its path inside
the request body (``conditions[1].phrase``, or ``rules[0].conditions[1].phrase`` when a body
holds several rules) and the rule it breaks. Unknown fields are refused too, so a misspelt
``negate`` never silently turns a rule around. Addresses are parsed with the standard library's
RFC 5322 tools and domains IDNA-normalised, exactly as mail is during sync.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from shared.errors import ValidationError
from shared.matching.addresses import normalize_domain, parse_address
from shared.rules.model import (
    ACTIONS,
    BLOCK,
    CONTENT_FIELDS,
    MATCH_ALL,
    MATCH_MODES,
    ROLES,
    AddressGroup,
    Condition,
    ContentCondition,
    ParticipantCondition,
    Rule,
    Switches,
)

if TYPE_CHECKING:
    from collections.abc import Container, Mapping

MAX_TENANT_RULES = 500
MAX_USER_RULES = 100
MAX_GROUPS = 100
MAX_CONDITIONS = 20
MAX_CONDITION_ENTRIES = 500
MAX_GROUP_ADDRESSES = 1_000
MAX_PHRASE_CHARS = 200
MAX_NAME_CHARS = 100
MAX_DEFINITION_CHARS = 30_000
"""Serialised rules and groups stay under this, well inside a table property's 64 KiB."""

ADDRESS_RULE = "must be an email address such as name@example.com"
GROUP_NAME_RULE = "must be 1 to 64 lower-case letters, digits, '-' or '_', starting with one"
_GROUP_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_RULE_FIELDS = frozenset({"name", "enabled", "match", "action", "conditions"})
_PARTICIPANT_FIELDS = frozenset({"type", "role", "addresses", "domains", "groups", "negate"})
_CONTENT_FIELDS = frozenset({"type", "field", "phrase", "negate"})
_GROUP_FIELDS = frozenset({"addresses", "description"})
SWITCH_FIELDS = {
    "internalOnly": "internal_only",
    "automaticReplies": "automatic_replies",
    "bulkMail": "bulk_mail",
    "noReplySenders": "no_reply_senders",
}
"""API name of each switch to its attribute of :class:`Switches`."""


def rule_from_json(
    body: Any, *, rule_id: str, scope: str, groups: Container[str], path: str = ""
) -> Rule:
    """Build one rule from its JSON definition.

    Args:
        body: the definition, as the API received it.
        rule_id: the id the rule is stored under.
        scope: ``tenant`` or ``user``.
        groups: the names of the tenant's address groups; a condition naming another is refused.
        path: where the definition sits in the request body, for error fields.

    Raises:
        ValidationError: naming the first field that breaks a rule.
    """
    data = _object(body, path or "body")
    _refuse_unknown(data, _RULE_FIELDS, path)
    conditions = _list(
        data.get("conditions"), _join(path, "conditions"), low=1, high=MAX_CONDITIONS
    )
    rule = Rule(
        rule_id=rule_id,
        name=_text(data.get("name"), _join(path, "name"), high=MAX_NAME_CHARS),
        conditions=tuple(
            _condition(item, f"{_join(path, 'conditions')}[{index}]", groups)
            for index, item in enumerate(conditions)
        ),
        match=_choice(data.get("match", MATCH_ALL), _join(path, "match"), MATCH_MODES),
        action=_choice(data.get("action", BLOCK), _join(path, "action"), ACTIONS),
        enabled=_flag(data.get("enabled", True), _join(path, "enabled")),
        scope=scope,
    )
    _refuse_oversized(rule_json(rule), path or "body")
    return rule


def rules_from_json(body: Any, *, scope: str, groups: Container[str], field: str) -> list[Rule]:
    """Build a list of rules posted together (a dry-run); each keeps its position as its id.

    Raises:
        ValidationError: naming the rule and field, as in ``rules[2].conditions[0].role``.
    """
    items = _list(body, field, low=0, high=MAX_TENANT_RULES)
    rules: list[Rule] = []
    for index, item in enumerate(items):
        definition = _object(item, f"{field}[{index}]")
        given = definition.get("id")
        rule_id = given if isinstance(given, str) and given else f"{field}[{index}]"
        clean = {key: value for key, value in definition.items() if key != "id"}
        rules.append(
            rule_from_json(
                clean, rule_id=rule_id, scope=scope, groups=groups, path=f"{field}[{index}]"
            )
        )
    return rules


def group_from_json(name: str, body: Any, path: str = "") -> AddressGroup:
    """Build a named address group from ``{"addresses": [...], "description"?}``.

    Raises:
        ValidationError: when the name, an address or the description breaks a rule.
    """
    data = _object(body, path or "body")
    _refuse_unknown(data, _GROUP_FIELDS, path)
    field = _join(path, "addresses")
    values = _list(data.get("addresses"), field, low=1, high=MAX_GROUP_ADDRESSES)
    group = AddressGroup(
        name=group_name(name),
        addresses=_unique(_address(value, f"{field}[{i}]") for i, value in enumerate(values)),
        description=_text(data.get("description", ""), _join(path, "description"), low=0, high=500),
    )
    _refuse_oversized(group_json(group), path or "body")
    return group


def group_name(value: Any, field: str = "name") -> str:
    """Return a group name in its stored (lower-case) form.

    Raises:
        ValidationError: when the name is not 1 to 64 letters, digits, ``-`` or ``_``.
    """
    name = value.strip().lower() if isinstance(value, str) else ""
    if not _GROUP_NAME.fullmatch(name):
        raise ValidationError(field, GROUP_NAME_RULE)
    return name


def switches_from_json(body: Any, path: str = "") -> Switches:
    """Build a tenant's switches; a switch left out takes its default.

    Raises:
        ValidationError: when a switch is unknown or not true or false.
    """
    data = _object(body, path or "body")
    _refuse_unknown(data, frozenset(SWITCH_FIELDS), path)
    values = {
        attribute: _flag(data[name], _join(path, name))
        for name, attribute in SWITCH_FIELDS.items()
        if name in data
    }
    return Switches(**values)


def rule_json(rule: Rule) -> dict[str, Any]:
    """Return a rule's definition as the API shows it and the store keeps it."""
    return {
        "name": rule.name,
        "enabled": rule.enabled,
        "match": rule.match,
        "action": rule.action,
        "conditions": [_condition_json(condition) for condition in rule.conditions],
    }


def group_json(group: AddressGroup) -> dict[str, Any]:
    """Return an address group as the API shows it."""
    return {
        "name": group.name,
        "description": group.description,
        "addresses": list(group.addresses),
    }


def switches_json(switches: Switches) -> dict[str, bool]:
    """Return switches as the API shows them."""
    return {name: bool(getattr(switches, attr)) for name, attr in SWITCH_FIELDS.items()}


def _condition(body: Any, path: str, groups: Container[str]) -> Condition:
    data = _object(body, path)
    kind = data.get("type")
    if kind == "participant":
        return _participant(data, path, groups)
    if kind == "content":
        return _content(data, path)
    raise ValidationError(_join(path, "type"), "must be participant or content")


def _participant(data: Mapping[str, Any], path: str, groups: Container[str]) -> Condition:
    _refuse_unknown(data, _PARTICIPANT_FIELDS, path)
    addresses = _list(data.get("addresses", []), _join(path, "addresses"), high=500)
    domains = _list(data.get("domains", []), _join(path, "domains"), high=500)
    names = _list(data.get("groups", []), _join(path, "groups"), high=MAX_GROUPS)
    if not (addresses or domains or names):
        field, rule = (
            _join(path, "addresses"),
            "a participant condition needs addresses, domains or groups",
        )
        raise ValidationError(field, rule)
    if len(addresses) + len(domains) + len(names) > MAX_CONDITION_ENTRIES:
        rule = f"addresses, domains and groups together must be at most {MAX_CONDITION_ENTRIES}"
        raise ValidationError(path, rule)
    return ParticipantCondition(
        role=_choice(data.get("role"), _join(path, "role"), ROLES),
        addresses=_unique(
            _address(value, f"{path}.addresses[{i}]") for i, value in enumerate(addresses)
        ),
        domains=_unique(_domain(value, f"{path}.domains[{i}]") for i, value in enumerate(domains)),
        groups=_unique(
            _known_group(value, f"{path}.groups[{i}]", groups) for i, value in enumerate(names)
        ),
        negate=_flag(data.get("negate", False), _join(path, "negate")),
    )


def _content(data: Mapping[str, Any], path: str) -> Condition:
    _refuse_unknown(data, _CONTENT_FIELDS, path)
    phrase = " ".join(
        _text(data.get("phrase"), _join(path, "phrase"), high=MAX_PHRASE_CHARS).split()
    )
    return ContentCondition(
        field=_choice(data.get("field"), _join(path, "field"), CONTENT_FIELDS),
        phrase=phrase,
        negate=_flag(data.get("negate", False), _join(path, "negate")),
    )


def _condition_json(condition: Condition) -> dict[str, Any]:
    if isinstance(condition, ContentCondition):
        return {
            "type": "content",
            "field": condition.field,
            "phrase": condition.phrase,
            "negate": condition.negate,
        }
    return {
        "type": "participant",
        "role": condition.role,
        "addresses": list(condition.addresses),
        "domains": list(condition.domains),
        "groups": list(condition.groups),
        "negate": condition.negate,
    }


def _address(value: Any, field: str) -> str:
    address = parse_address(value) if isinstance(value, str) else None
    if address is None:
        raise ValidationError(field, ADDRESS_RULE)
    return address.address


def _domain(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, "must be a domain name such as example.com")
    return normalize_domain(value.removeprefix("@"), field)


def _known_group(value: Any, field: str, groups: Container[str]) -> str:
    name = group_name(value, field)
    if name not in groups:
        raise ValidationError(field, "must name an existing address group")
    return name


def _object(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(field, "must be a JSON object")
    return value


def _list(value: Any, field: str, *, low: int = 0, high: int) -> list[Any]:
    if not isinstance(value, list):
        raise ValidationError(field, "must be a list")
    if not low <= len(value) <= high:
        raise ValidationError(field, f"must hold from {low} to {high} entries")
    return value


def _text(value: Any, field: str, *, low: int = 1, high: int) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, "must be text")
    text = value.strip()
    if not low <= len(text) <= high:
        rule = "must not be empty" if not text and low else f"must be {low} to {high} characters"
        raise ValidationError(field, rule)
    if any(ord(char) < 0x20 and char not in "\t\n\r" for char in text):
        raise ValidationError(field, "must not contain control characters")
    return text


def _choice(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValidationError(field, "must be one of " + ", ".join(allowed))
    return str(value)


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(field, "must be true or false")
    return value


def _refuse_unknown(data: Mapping[str, Any], known: frozenset[str], path: str) -> None:
    for key in data:
        if key not in known:
            raise ValidationError(_join(path, key), "is not a known field")


def _refuse_oversized(definition: Mapping[str, Any], field: str) -> None:
    if len(json.dumps(definition, ensure_ascii=False)) > MAX_DEFINITION_CHARS:
        rule = f"must stay under {MAX_DEFINITION_CHARS} characters as JSON; split it"
        raise ValidationError(field, rule)


def _unique(values: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
