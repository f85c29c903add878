"""Unit tests for shared.directory._importplan."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from shared.directory._importplan import plan_import
from shared.directory.validation import company_drafts
from shared.errors import ValidationError

STORED: list[dict[str, Any]] = [
    {"companyId": "c-acme", "name": "Acme", "externalId": "crm-1"},
    {"companyId": "c-beta", "name": "Beta"},
    {"companyId": "c-twin-1", "name": "Twin"},
    {"companyId": "c-twin-2", "name": "Twin"},
]


def _plan(rows: list[dict[str, Any]], mode: str = "upsert") -> list[tuple[str, bool]]:
    """Plan an import against STORED and return (company id, updates a stored one) per row."""
    counter = itertools.count(1)
    planned = plan_import(
        company_drafts(rows), STORED, mode=mode, new_id=lambda: f"new-{next(counter)}"
    )
    return [(row.company_id, row.stored is not None) for row in planned]


def test_plan_import_matches_by_external_id_before_name():
    """A row with a known externalId updates that company even when renamed."""
    # GIVEN a row renaming the company with externalId crm-1
    rows = [{"name": "Acme Renamed", "externalId": "crm-1"}]

    # WHEN the import is planned
    # THEN it updates c-acme
    assert _plan(rows) == [("c-acme", True)]


def test_plan_import_matches_by_exact_name_without_external_id():
    """A row without externalId updates the company of the same exact name, or creates one."""
    # GIVEN one row naming a stored company and one naming it in another case
    rows = [{"name": "Beta"}, {"name": "beta"}]

    # WHEN the import is planned
    # THEN the exact name matches and the other spelling is a new company
    assert _plan(rows) == [("c-beta", True), ("new-1", False)]


def test_plan_import_adopts_a_same_named_company_without_external_id():
    """A new externalId attaches to the same-named company that has none, instead of a copy."""
    # GIVEN a row with an unknown externalId and the name of a company without one
    rows = [{"name": "Beta", "externalId": "crm-2"}]

    # WHEN the import is planned
    # THEN it updates c-beta
    assert _plan(rows) == [("c-beta", True)]


def test_plan_import_does_not_take_over_a_company_with_another_external_id():
    """An unknown externalId does not match a same-named company that has a different one."""
    # GIVEN a row named Acme with an externalId other than Acme's
    rows = [{"name": "Acme", "externalId": "crm-9"}]

    # WHEN the import is planned
    # THEN a new company is created
    assert _plan(rows) == [("new-1", False)]


def test_plan_import_refuses_an_ambiguous_name():
    """A name shared by two stored companies cannot be matched without an externalId."""
    # GIVEN a row naming the two Twin companies
    rows = [{"name": "New"}, {"name": "Twin"}]

    # WHEN the import is planned
    with pytest.raises(ValidationError) as caught:
        _plan(rows)

    # THEN the row's name is named
    assert caught.value.field == "companies[1].name"


def test_plan_import_refuses_two_rows_resolving_to_one_company():
    """Rows that differ but land on the same stored company are refused."""
    # GIVEN one row adopting Beta by name with a new externalId and one naming Beta plainly
    rows = [{"name": "Beta", "externalId": "crm-2"}, {"name": "Beta"}]

    # WHEN the import is planned
    with pytest.raises(ValidationError) as caught:
        _plan(rows)

    # THEN the later row is named
    assert caught.value.field == "companies[1]"


def test_plan_import_create_mode_refuses_existing_companies():
    """In create mode a row that matches a stored company stops the import."""
    # GIVEN a new company and one matching Acme
    rows = [{"name": "New"}, {"name": "Acme", "externalId": "crm-1"}]

    # WHEN the import is planned in create mode
    with pytest.raises(ValidationError) as caught:
        _plan(rows, mode="create")

    # THEN the matching row is named and the rule suggests upsert
    assert caught.value.field == "companies[1]"
    assert "upsert" in caught.value.rule


def test_plan_import_refuses_an_unknown_mode():
    """Only upsert and create are modes."""
    # GIVEN an unknown mode
    # WHEN the import is planned
    with pytest.raises(ValidationError) as caught:
        _plan([{"name": "New"}], mode="replace")

    # THEN the mode is named
    assert caught.value.field == "mode"
