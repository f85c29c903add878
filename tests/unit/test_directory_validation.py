"""Unit tests for shared.directory.validation."""

from __future__ import annotations

from typing import Any

import pytest

from shared.directory.model import Contact
from shared.directory.validation import (
    MAX_IMPORT_ROWS,
    company_draft,
    company_drafts,
    guid,
    tenant_draft,
    user_draft,
)
from shared.errors import ValidationError


def _field_of(call: Any, *args: Any) -> str:
    """Run a validator that must refuse its input and return the field it names."""
    with pytest.raises(ValidationError) as caught:
        call(*args)
    return caught.value.field


def test_tenant_draft_normalises_domains_and_defaults_backfill():
    """Own domains are normalised and deduplicated, and backfill defaults to 360 days."""
    # GIVEN a tenant body with mixed-case, repeated and Unicode domains and no backfillDays
    body = {"name": " Vendor ", "ownDomains": ["Vendor.EXAMPLE", "vendor.example.", "bücher.de"]}

    # WHEN it is checked
    draft = tenant_draft(body)

    # THEN the name is trimmed, the domains are normalised once each, and the default applies
    assert draft.name == "Vendor"
    assert draft.own_domains == ("vendor.example", "xn--bcher-kva.de")
    assert draft.backfill_days == 360


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ownDomains": ["a.example"]}, "name"),
        ({"name": "", "ownDomains": ["a.example"]}, "name"),
        ({"name": "x" * 201, "ownDomains": ["a.example"]}, "name"),
        ({"name": "T"}, "ownDomains"),
        ({"name": "T", "ownDomains": []}, "ownDomains"),
        ({"name": "T", "ownDomains": "a.example"}, "ownDomains"),
        ({"name": "T", "ownDomains": ["a.example", "not a domain"]}, "ownDomains[1]"),
        ({"name": "T", "ownDomains": ["a.example"], "backfillDays": 36501}, "backfillDays"),
        ({"name": "T", "ownDomains": ["a.example"], "backfillDays": -1}, "backfillDays"),
        ({"name": "T", "ownDomains": ["a.example"], "backfillDays": True}, "backfillDays"),
        ({"name": "T", "ownDomains": ["a.example"], "backfillDays": "30"}, "backfillDays"),
        ({"name": "T", "ownDomains": ["a.example"], "backfill": 30}, "backfill"),
    ],
)
def test_tenant_draft_names_the_bad_field(body: dict[str, Any], field: str):
    """Each broken rule of a tenant body is reported with the field that breaks it."""
    # GIVEN a tenant body that breaks one rule
    # WHEN it is checked
    # THEN the error names the field
    assert _field_of(tenant_draft, body) == field


def test_tenant_draft_accepts_backfill_bounds():
    """Zero (no history) and 3650 days are both allowed."""
    # GIVEN bodies at the lower and upper bound
    low = {"name": "T", "ownDomains": ["a.example"], "backfillDays": 0}
    high = {"name": "T", "ownDomains": ["a.example"], "backfillDays": 3650}

    # WHEN they are checked
    # THEN both are accepted as given
    assert tenant_draft(low).backfill_days == 0
    assert tenant_draft(high).backfill_days == 3650


def test_user_draft_normalises_upn_and_deduplicates_roles():
    """The UPN is lower-cased and roles keep their first spelling, without repeats."""
    # GIVEN a user body with a mixed-case UPN and a repeated role
    body = {"upn": "Jane.Doe@Vendor.Example", "roles": ["CSM", " CSM ", "Sales"], "id": "ignored"}

    # WHEN it is checked
    draft = user_draft(body)

    # THEN the UPN is normalised, roles are trimmed and unique, and displayName defaults to ""
    assert draft.upn == "jane.doe@vendor.example"
    assert draft.roles == ("CSM", "Sales")
    assert draft.display_name == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "upn"),
        ({"upn": "not an address"}, "upn"),
        ({"upn": "Jane <jane@vendor.example>"}, "upn"),
        ({"upn": "jane@vendor.example", "displayName": 5}, "displayName"),
        ({"upn": "jane@vendor.example", "roles": "Admin"}, "roles"),
        ({"upn": "jane@vendor.example", "roles": ["ok", ""]}, "roles[1]"),
        ({"upn": "jane@vendor.example", "roles": ["x" * 65]}, "roles[0]"),
        ({"upn": "jane@vendor.example", "roles": [7]}, "roles[0]"),
    ],
)
def test_user_draft_names_the_bad_field(body: dict[str, Any], field: str):
    """Each broken rule of a user body is reported with the field that breaks it."""
    # GIVEN a user body that breaks one rule
    # WHEN it is checked
    # THEN the error names the field
    assert _field_of(user_draft, body) == field


def test_guid_lower_cases_and_refuses_other_text():
    """A GUID comes back lower-case; anything else is refused under the given field name."""
    # GIVEN an upper-case GUID and a non-GUID
    upper = "0A1B2C3D-0000-4000-8000-00000000ABCD"

    # WHEN each is checked
    # THEN the GUID is canonical and the other names the field
    assert guid(upper, "user_id") == upper.lower()
    assert _field_of(guid, "../etc", "user_id") == "user_id"


def test_company_draft_reads_contacts_as_objects_and_strings():
    """Contacts may be objects or address strings, with names, deduplicated by address."""
    # GIVEN contacts in both shapes, one repeated in a different case
    body = {
        "name": "Acme",
        "domains": ["ACME.example", "acme.example"],
        "contacts": [
            {"email": "Jane@Acme.example", "name": "Jane Doe"},
            '"Roe, Rick" <rick@acme.example>',
            "jane@ACME.example",
        ],
        "externalId": " crm-1 ",
    }

    # WHEN the company is checked
    draft = company_draft(body)

    # THEN domains and contacts are normalised and the first spelling of a contact wins
    assert draft.domains == ("acme.example",)
    assert draft.contacts == (
        Contact("jane@acme.example", "Jane Doe"),
        Contact("rick@acme.example", "Roe, Rick"),
    )
    assert draft.external_id == "crm-1"


def test_company_draft_reads_a_contacts_time_zone():
    """A contact's IANA time zone is kept; null or absent leaves it empty."""
    # GIVEN contacts with a zone, with null, and without one
    body = {
        "name": "Acme",
        "contacts": [
            {"email": "jane@acme.example", "timeZone": "Asia/Tokyo"},
            {"email": "rick@acme.example", "timeZone": None},
            "ann@acme.example",
        ],
    }

    # WHEN the company is checked
    draft = company_draft(body)

    # THEN only Jane has a zone
    assert draft.contacts == (
        Contact("jane@acme.example", "", "Asia/Tokyo"),
        Contact("rick@acme.example", ""),
        Contact("ann@acme.example", ""),
    )


@pytest.mark.parametrize("zone", ["Mars/Olympus", "tokyo", "+09:00", 9, ["Asia/Tokyo"], "x" * 65])
def test_company_draft_names_a_contacts_bad_time_zone(zone: object):
    """A time zone that is not an IANA name is refused under the contact's timeZone field."""
    # GIVEN a second contact with a bad zone
    body = {
        "name": "Acme",
        "contacts": ["ann@acme.example", {"email": "jane@acme.example", "timeZone": zone}],
    }

    # WHEN it is checked
    # THEN the error names that contact's field
    assert _field_of(company_draft, body) == "contacts[1].timeZone"


def test_company_draft_without_contacts_field_keeps_none():
    """Leaving contacts out is different from an empty list: it means "keep the stored ones"."""
    # GIVEN one body without contacts and one with an empty list
    # WHEN both are checked
    # THEN the first has None and the second an empty tuple
    assert company_draft({"name": "Acme"}).contacts is None
    assert company_draft({"name": "Acme", "contacts": []}).contacts == ()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"domains": ["a.example"]}, "name"),
        ({"name": "A", "domains": ["a.example", "a.example", "bad domain"]}, "domains[2]"),
        ({"name": "A", "domains": [None]}, "domains[0]"),
        ({"name": "A", "contacts": ["x@a.example", {"email": "nope"}]}, "contacts[1].email"),
        ({"name": "A", "contacts": [{"name": "No Email"}]}, "contacts[0].email"),
        ({"name": "A", "contacts": [{"email": "x@a.example", "phone": "1"}]}, "contacts[0].phone"),
        ({"name": "A", "contacts": [{"email": "x@a.example", "name": 3}]}, "contacts[0].name"),
        ({"name": "A", "contacts": ["not an address"]}, "contacts[0]"),
        ({"name": "A", "externalId": 12}, "externalId"),
        ({"name": "A", "domain": ["a.example"]}, "domain"),
    ],
)
def test_company_draft_names_the_bad_field(body: Any, field: str):
    """Each broken rule of a company body is reported with the path of the field."""
    # GIVEN a company body that breaks one rule
    # WHEN it is checked
    # THEN the error names the field
    assert _field_of(company_draft, body) == field


def test_company_drafts_prefixes_fields_with_the_row():
    """An import reports a bad field with its row index, as in companies[1].domains[0]."""
    # GIVEN an import whose second row has a bad domain
    rows = [{"name": "A", "domains": ["a.example"]}, {"name": "B", "domains": ["-bad-"]}]

    # WHEN it is checked
    # THEN the field carries the row index
    assert _field_of(company_drafts, rows) == "companies[1].domains[0]"


def test_company_drafts_refuses_a_company_named_twice():
    """Two rows with the same externalId, or the same name and no externalId, are refused."""
    # GIVEN imports repeating an externalId and a name
    by_external = [{"name": "A", "externalId": "1"}, {"name": "B", "externalId": "1"}]
    by_name = [{"name": "A"}, {"name": "B"}, {"name": "A"}]

    # WHEN they are checked
    # THEN the later row is named
    assert _field_of(company_drafts, by_external) == "companies[1].externalId"
    assert _field_of(company_drafts, by_name) == "companies[2].name"


def test_company_drafts_allows_same_name_with_different_external_ids():
    """Two companies may share a name when their externalIds tell them apart."""
    # GIVEN two rows with one name and two externalIds
    rows = [{"name": "A", "externalId": "1"}, {"name": "A", "externalId": "2"}]

    # WHEN they are checked
    drafts = company_drafts(rows)

    # THEN both are accepted
    assert [draft.external_id for draft in drafts] == ["1", "2"]


def test_company_drafts_refuses_more_rows_than_the_limit():
    """An import above the row limit is refused as a whole, with a rule that says to split it."""
    # GIVEN one row more than the limit
    rows = [{"name": f"C{index}"} for index in range(MAX_IMPORT_ROWS + 1)]

    # WHEN it is checked
    with pytest.raises(ValidationError) as caught:
        company_drafts(rows)

    # THEN the error names the list and says to split it
    assert caught.value.field == "companies"
    assert "split" in caught.value.rule


def test_company_drafts_refuses_a_non_list():
    """An import must be a list of companies."""
    # GIVEN an object where a list belongs
    # WHEN it is checked
    # THEN the list itself is named
    assert _field_of(company_drafts, {"name": "A"}) == "companies"


def test_company_draft_accepts_a_document_read_back():
    """A company as GET returns it (id, null externalId, empty contact names) can be PUT back."""
    # GIVEN a document in the API's output shape
    body = {
        "id": "0a1b2c3d-0000-4000-8000-00000000abcd",
        "name": "Acme",
        "domains": ["acme.example"],
        "externalId": None,
        "contacts": [{"email": "jane@acme.example", "name": ""}],
        "contactCount": 1,
    }

    # WHEN it is checked
    draft = company_draft(body)

    # THEN it is accepted with the read-only fields ignored
    assert draft.external_id is None
    assert draft.contacts == (Contact("jane@acme.example", ""),)


def test_company_draft_reads_owners_and_properties():
    """Owners are canonical GUIDs without repeats, and properties keep their JSON values."""
    # GIVEN a company with owners in mixed case, repeated, and typed properties
    owner = "AAAAAAAA-0000-0000-0000-000000000001"
    body = {
        "name": "Acme",
        "ownerIds": [owner, owner.lower()],
        "properties": {"arr": 120000.5, "tier": "gold", "active": True, "churn": None},
    }

    # WHEN it is checked
    draft = company_draft(body)

    # THEN owners are normalised once and properties kept as sent
    assert draft.owner_ids == (owner.lower(),)
    assert draft.properties == body["properties"]


def test_company_draft_leaves_owners_and_properties_unset_when_absent():
    """A company without owners or properties leaves both None, so stored values stay."""
    # GIVEN a company body with neither field / WHEN checked
    draft = company_draft({"name": "Acme"})

    # THEN both are None
    assert draft.owner_ids is None
    assert draft.properties is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "A", "ownerIds": ["not-a-guid"]}, "ownerIds[0]"),
        ({"name": "A", "ownerIds": "0"}, "ownerIds"),
        ({"name": "A", "properties": []}, "properties"),
        ({"name": "A", "properties": {"1arr": 1}}, "properties.1arr"),
        ({"name": "A", "properties": {"arr": {"nested": 1}}}, "properties.arr"),
        ({"name": "A", "properties": {"arr": float("nan")}}, "properties.arr"),
        ({"name": "A", "properties": {"note": "x" * 501}}, "properties.note"),
    ],
)
def test_company_draft_refuses_bad_owners_and_properties(body: Any, field: str):
    """Owners must be GUIDs and properties named plain values; the field is named."""
    # GIVEN a company with one bad owner or property / WHEN checked / THEN the field is named
    assert _field_of(company_draft, body) == field
