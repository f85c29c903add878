"""Unit tests for the local host's route-template matcher."""

import pytest

from devstack.host.errors import HostConfigError
from devstack.host.routes import RouteTemplate


def test_route_template_extracts_named_parameters():
    """A template with parameters yields their values from a matching path."""
    # GIVEN a template with two parameters
    template = RouteTemplate("companies/{company_id}/emails/{email_id}")

    # WHEN a matching path is matched
    values = template.match("companies/c-1/emails/m-2")

    # THEN both values come back by name
    assert values == {"company_id": "c-1", "email_id": "m-2"}


def test_route_template_literals_match_without_case():
    """Literal segments match whatever their case, as ASP.NET Core routing does."""
    # GIVEN a literal template
    template = RouteTemplate("Health/Ready")

    # WHEN / THEN a differently cased path matches and another path does not
    assert template.match("/health/READY/") == {}
    assert template.match("health/live") is None


def test_route_template_optional_parameter_may_be_absent():
    """An optional trailing parameter matches with and without a value."""
    # GIVEN a template ending in an optional parameter
    template = RouteTemplate("hello/{name?}")

    # WHEN / THEN it matches both forms and leaves the absent value out
    assert template.match("hello") == {}
    assert template.match("hello/bob") == {"name": "bob"}
    assert template.match("hello/bob/extra") is None


def test_route_template_int_constraint_rejects_non_integers():
    """An int constraint turns a non-numeric or out-of-range segment into no match."""
    # GIVEN a template with an int-constrained parameter
    template = RouteTemplate("items/{id:int}")

    # WHEN / THEN only 32-bit integers match
    assert template.match("items/42") == {"id": "42"}
    assert template.match("items/-7") == {"id": "-7"}
    assert template.match("items/abc") is None
    assert template.match("items/99999999999") is None


@pytest.mark.parametrize(
    ("template", "good", "bad"),
    [
        ("a/{v:bool}", "true", "yes"),
        ("a/{v:guid}", "1f0e9a9c-5a3b-4b8e-9a53-0b7a1c2d3e4f", "not-a-guid"),
        ("a/{v:alpha}", "abc", "abc1"),
        ("a/{v:min(10)}", "10", "9"),
        ("a/{v:range(1,3)}", "2", "4"),
        ("a/{v:length(2,3)}", "abc", "abcd"),
        ("a/{v:maxlength(2)}", "ab", "abc"),
        ("a/{v:regex(^x)}", "xy", "yx"),
        ("a/{v:int:min(5)}", "6", "4"),
    ],
)
def test_route_template_constraints_accept_and_reject(template, good, bad):
    """Each supported constraint accepts a fitting value and rejects an unfitting one."""
    # GIVEN a constrained template
    route = RouteTemplate(template)

    # WHEN / THEN the fitting value matches and the other does not
    assert route.match(f"a/{good}") == {"v": good}
    assert route.match(f"a/{bad}") is None


def test_route_template_catch_all_takes_the_rest_of_the_path():
    """A catch-all parameter swallows every remaining segment, or nothing."""
    # GIVEN a catch-all template
    template = RouteTemplate("files/{*path}")

    # WHEN / THEN slashes are kept and an empty rest is allowed
    assert template.match("files/a/b/c.txt") == {"path": "a/b/c.txt"}
    assert template.match("files") == {}


def test_route_template_complex_segment_splits_at_the_last_separator():
    """Parameters mixed with literal text in one segment split like ASP.NET Core does."""
    # GIVEN a segment with two parameters around a dot
    template = RouteTemplate("files/{name}.{ext}")

    # WHEN a file name with two dots is matched
    values = template.match("files/report.final.pdf")

    # THEN the extension is the part after the last dot
    assert values == {"name": "report.final", "ext": "pdf"}


def test_route_template_precedence_orders_literals_before_parameters():
    """Templates sort literal segments ahead of constrained, plain and optional parameters."""
    # GIVEN templates that could match the same path
    literal = RouteTemplate("users/me")
    constrained = RouteTemplate("users/{id:int}")
    plain = RouteTemplate("users/{id}")
    optional = RouteTemplate("users/{id?}")

    # WHEN they are sorted by precedence
    ordered = sorted([optional, plain, constrained, literal], key=lambda t: t.precedence)

    # THEN the most specific comes first
    assert ordered == [literal, constrained, plain, optional]


@pytest.mark.parametrize(
    "template",
    [
        "a/{id:nosuch}",
        "a/{id=5}",
        "a/{id?}/b",
        "a/{*rest}/b",
        "a/{id}/{id}",
        "a/x{id?}",
        "a/{min:min(x)}",
        "a/{bad name}",
    ],
)
def test_route_template_malformed_templates_fail_at_start_up(template):
    """A malformed template raises HostConfigError naming the template."""
    # GIVEN / WHEN a malformed template is compiled / THEN it is refused with its text
    with pytest.raises(HostConfigError, match="route template"):
        RouteTemplate(template)
