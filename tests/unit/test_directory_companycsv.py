"""Unit tests for shared.directory.companycsv."""

from __future__ import annotations

import pytest

from shared.directory.companycsv import parse_companies_csv
from shared.errors import ValidationError


def _problem(text: str) -> tuple[str, str]:
    """Parse CSV that must be refused and return the field and rule of the error."""
    with pytest.raises(ValidationError) as caught:
        parse_companies_csv(text)
    return caught.value.field, caught.value.rule


def test_parse_companies_csv_splits_cells_on_semicolons():
    """Domains and contacts cells hold several values separated by semicolons."""
    # GIVEN a file with a quoted contact whose display name holds a comma, and a blank row
    text = (
        "\ufeffname,domains,contacts,externalId\r\n"
        'Acme,acme.example; acme.io ,"""Doe, Jane"" <jane@acme.example>;bob@acme.example",A1\r\n'
        "\r\n"
        "Beta,beta.example,,\r\n"
    )

    # WHEN it is parsed
    rows = parse_companies_csv(text)

    # THEN each row becomes a company document like the JSON import takes
    assert rows == [
        {
            "name": "Acme",
            "domains": ["acme.example", "acme.io"],
            "contacts": ['"Doe, Jane" <jane@acme.example>', "bob@acme.example"],
            "externalId": "A1",
        },
        {"name": "Beta", "domains": ["beta.example"], "contacts": []},
    ]


def test_parse_companies_csv_accepts_columns_in_any_order_and_case():
    """Header names are matched without regard to case, and only name is required."""
    # GIVEN a header in another order and case, without a contacts column
    text = "ExternalID,NAME\nx-1,Acme\n"

    # WHEN it is parsed
    rows = parse_companies_csv(text)

    # THEN there is no contacts key, so stored contacts would be kept
    assert rows == [{"name": "Acme", "domains": [], "externalId": "x-1"}]


def test_parse_companies_csv_pads_short_rows():
    """A row with fewer cells than the header reads the missing cells as empty."""
    # GIVEN a row that stops after the name
    text = "name,domains,contacts\nAcme\n"

    # WHEN it is parsed
    rows = parse_companies_csv(text)

    # THEN the missing cells are empty lists
    assert rows == [{"name": "Acme", "domains": [], "contacts": []}]


def test_parse_companies_csv_reports_bad_cell_by_line():
    """A bad value is reported by its line number and column, not its list position."""
    # GIVEN a file whose third line has a bad second domain
    text = "name,domains\nAcme,acme.example\nBeta,beta.example;not a domain\n"

    # WHEN it is parsed
    field, _ = _problem(text)

    # THEN the field names line 3 and the domain
    assert field == "csv line 3: domains[1]"


def test_parse_companies_csv_counts_lines_inside_quoted_cells():
    """A quoted cell spanning two lines shifts the line numbers of the rows after it."""
    # GIVEN a first row whose domains cell spans lines 2 and 3, and a bad row on line 4
    text = 'name,domains\nAcme,"acme.example;\nacme.io"\nBeta,bad_domain\n'

    # WHEN it is parsed
    field, _ = _problem(text)

    # THEN the bad row is reported on line 4
    assert field == "csv line 4: domains[0]"


def test_parse_companies_csv_reports_repeated_company_by_lines():
    """A company named twice is reported at the later line, pointing at the earlier one."""
    # GIVEN two rows with one externalId
    text = "name,externalId\nA,x\nB,x\n"

    # WHEN it is parsed
    field, rule = _problem(text)

    # THEN both lines are named
    assert field == "csv line 3: externalId"
    assert rule == "repeats csv line 2"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("", "csv line 1"),
        ("domains\na.example\n", "csv line 1"),
        ("name,phone\nA,1\n", "csv line 1: column 2"),
        ("name,Name\nA,B\n", "csv line 1: name"),
        ("name,domains\nA,a.example,extra\n", "csv line 2"),
        ('name\n"unterminated\n', "csv line 2"),
        ("name,domains\n,a.example\n", "csv line 2: name"),
    ],
)
def test_parse_companies_csv_names_the_bad_line(text: str, field: str):
    """Broken headers, cells and quoting are reported by line."""
    # GIVEN a file that breaks one rule
    # WHEN it is parsed
    # THEN the error names the line (and column where there is one)
    assert _problem(text)[0] == field
