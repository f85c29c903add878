"""Unit tests for shared.access.policy: the policy document, its defaults and its checks."""

from __future__ import annotations

from typing import Any

import pytest

from shared.access.policy import (
    BUILT_IN_DEFAULT,
    Feature,
    FieldRule,
    ObjectType,
    Portfolio,
    TenantPolicy,
    Workflow,
    parse_policy,
)
from shared.errors import ValidationError


def _field_of(body: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_policy(body)
    return caught.value.field


def test_policy_empty_document_takes_built_in_defaults():
    """A document with nothing in it means the built-in default for everyone."""
    # GIVEN an empty policy document
    # WHEN it is parsed
    policy = parse_policy({})

    # THEN the default entry is the built-in one and no role is listed
    assert policy.default == BUILT_IN_DEFAULT
    assert policy.roles == {}
    assert BUILT_IN_DEFAULT.features == {Feature.MAIL, Feature.CALENDAR}
    assert BUILT_IN_DEFAULT.portfolio is Portfolio.ALL
    assert BUILT_IN_DEFAULT.workflows == {Workflow.SHARED_INBOX, Workflow.AUTOMATIC_EMAILS}


def test_policy_role_entry_inherits_what_it_leaves_out_from_default():
    """A role entry that names only its portfolio keeps the default's features and workflows."""
    # GIVEN a default without calendar and a role that only narrows the portfolio
    body = {
        "default": {"features": ["mail"], "workflows": []},
        "roles": {"Sales": {"portfolio": "owned"}},
    }

    # WHEN it is parsed
    policy = parse_policy(body)

    # THEN the role has the default's features and workflows, with its own portfolio
    sales = policy.roles["Sales"]
    assert sales.features == {Feature.MAIL}
    assert sales.workflows == frozenset()
    assert sales.portfolio is Portfolio.OWNED


def test_policy_round_trips_through_its_json():
    """The JSON a policy writes parses back into the same policy."""
    # GIVEN a policy with field rules of both kinds
    body = {
        "roles": {
            "Viewer": {
                "fields": {
                    "email": {"visible": ["from", "recipients", "sentDateTime"]},
                    "company": {"hidden": ["properties.arr"]},
                }
            }
        }
    }
    policy = parse_policy(body)

    # WHEN its JSON is parsed again
    again = parse_policy(policy.as_json())

    # THEN nothing changed
    assert again.roles == policy.roles
    assert again.default == policy.default


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"rolez": {}}, "rolez"),
        ({"roles": []}, "roles"),
        ({"roles": {"Sales": {"features": ["fax"]}}}, "roles.Sales.features[0]"),
        ({"roles": {"Sales": {"portfolio": "mine"}}}, "roles.Sales.portfolio"),
        ({"roles": {"Sales": {"workflows": "sharedInbox"}}}, "roles.Sales.workflows"),
        ({"roles": {"Sales": {"fields": {"invoice": {}}}}}, "roles.Sales.fields.invoice"),
        (
            {"roles": {"Sales": {"fields": {"email": {"hidden": ["subjet"]}}}}},
            "roles.Sales.fields.email.hidden[0]",
        ),
        (
            {"roles": {"Sales": {"fields": {"email": {"hidden": [], "visible": []}}}}},
            "roles.Sales.fields.email",
        ),
        (
            {"roles": {"Sales": {"fields": {"email": {"hidden": ["properties.arr"]}}}}},
            "roles.Sales.fields.email.hidden[0]",
        ),
        (
            {"roles": {"Sales": {"fields": {"company": {"hidden": ["properties.a-b"]}}}}},
            "roles.Sales.fields.company.hidden[0]",
        ),
        ({"roles": {"Admin": {}}}, "roles.Admin"),
        ({"roles": {" Sales": {}}}, "roles. Sales"),
        ({"roles": {"Sales": {"extra": 1}}}, "roles.Sales.extra"),
        ({"default": {"portfolio": 3}}, "default.portfolio"),
    ],
)
def test_policy_refuses_bad_documents_naming_the_field(body: Any, field: str):
    """Every broken rule is refused with the path of the field that breaks it."""
    # GIVEN a document with one mistake
    # WHEN it is parsed
    # THEN the error names that field
    assert _field_of(body) == field


def test_policy_refuses_too_many_roles():
    """A document with more roles than the limit is refused on the roles field."""
    # GIVEN 51 roles
    body = {"roles": {f"Role{n}": {} for n in range(51)}}

    # WHEN it is parsed / THEN roles is named
    assert _field_of(body) == "roles"


def test_field_rule_hidden_child_hides_parent_as_a_whole_only():
    """Hiding ``properties.arr`` leaves ``properties`` partly visible, not whole."""
    # GIVEN a rule hiding one custom property
    rule = FieldRule(hidden=frozenset({"properties.arr"}))

    # WHEN fields are asked about
    # THEN the property is hidden, its siblings and other fields shown, the parent not whole
    assert not rule.shows("properties.arr")
    assert rule.shows("properties.industry")
    assert not rule.shows("properties")
    assert rule.shows("name")


def test_field_rule_visible_list_shows_only_what_it_names():
    """An allow-list shows its fields and the children of a named parent, nothing else."""
    # GIVEN a rule listing visible fields
    rule = FieldRule(visible=frozenset({"from", "properties"}))

    # WHEN fields are asked about / THEN only named ones and their children show
    assert rule.shows("from")
    assert rule.shows("properties.arr")
    assert not rule.shows("subject")


def test_tenant_policy_uses_default_only_when_no_role_is_listed():
    """Listed roles apply; the default entry applies only to callers with no listed role."""
    # GIVEN a policy listing one role
    policy = parse_policy({"roles": {"Sales": {"portfolio": "owned"}}})

    # WHEN entries are looked up for several role sets
    # THEN listed roles win, unlisted ones fall back to the default
    assert policy.entries_for(["Sales", "Other"]) == (policy.roles["Sales"],)
    assert policy.entries_for(["Other"]) == (policy.default,)
    assert policy.entries_for([]) == (policy.default,)


def test_tenant_policy_json_spells_out_every_object_type():
    """The document a GET returns names every object type of every entry."""
    # GIVEN the built-in policy
    # WHEN it is written as JSON
    document = TenantPolicy().as_json()

    # THEN every object type has a rule
    assert set(document["default"]["fields"]) == {str(kind) for kind in ObjectType}
    assert document["roles"] == {}
