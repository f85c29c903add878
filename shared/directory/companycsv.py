"""Read a company import written as CSV, reporting problems by the file's line numbers.

The first row is the header: ``name,domains,contacts,externalId`` (any order, any case; only
``name`` is required). A ``domains`` or ``contacts`` cell holds several values separated by
``;``; a contact is an address, optionally with a display name as in ``Jane Doe <jane@x.com>``.
Blank rows are skipped. Leaving out the ``contacts`` column leaves the contacts of existing
companies as they are; an empty ``contacts`` cell removes them.

Known limitations: a display name that itself contains ``;`` cannot be written in a contacts
cell. Line numbers count physical lines, so a row whose quoted cell spans several lines is
reported by the line where it starts.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from shared.directory.validation import company_drafts
from shared.errors import ValidationError

__all__ = ["COLUMNS", "parse_companies_csv"]

COLUMNS = ("name", "domains", "contacts", "externalId")
"""The columns a company CSV may have, as spelled in the JSON import."""

_BY_LOWER = {column.lower(): column for column in COLUMNS}
_ROW_FIELD = re.compile(r"companies\[(\d+)\]\.?(.*)")
_ROW_REF = re.compile(r"companies\[(\d+)\]")


def parse_companies_csv(text: str) -> list[dict[str, Any]]:
    """Turn CSV text into company documents for :meth:`DirectoryService.import_companies`.

    Every row is checked as the JSON import checks it, so a bad cell is reported as
    ``csv line 4: domains[1]`` rather than by its position in the list.

    Raises:
        ValidationError: naming the line and column of the first problem.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True)
    try:
        columns = _header(next(reader, None))
        rows, lines = _rows(reader, columns)
    except csv.Error as error:
        field = f"csv line {reader.line_num}"
        raise ValidationError(field, "must be valid CSV") from error

    try:
        company_drafts(rows)
    except ValidationError as error:
        raise _at_line(error, lines) from error
    return rows


def _header(cells: list[str] | None) -> list[str]:
    expected = ",".join(COLUMNS)
    header = "csv line 1"
    if not cells:
        raise ValidationError(header, f"must be the header row {expected}")

    columns = [_BY_LOWER.get(cell.strip().lower(), "") for cell in cells]
    for position, column in enumerate(columns, start=1):
        if not column:
            field = f"{header}: column {position}"
            raise ValidationError(field, f"must be one of {expected}")
        if columns.index(column) != position - 1:
            field = f"{header}: {column}"
            raise ValidationError(field, "must appear only once")
    if "name" not in columns:
        raise ValidationError(header, "must have a name column")
    return columns


def _rows(reader: Any, columns: list[str]) -> tuple[list[dict[str, Any]], list[int]]:
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    start = reader.line_num + 1
    for cells in reader:
        if any(cell.strip() for cell in cells):
            if len(cells) > len(columns):
                field = f"csv line {start}"
                rule = f"must have at most {len(columns)} cells, as the header row has"
                raise ValidationError(field, rule)
            padded = [*cells, *[""] * (len(columns) - len(cells))]
            rows.append(_document(dict(zip(columns, padded, strict=True))))
            lines.append(start)
        start = reader.line_num + 1
    return rows, lines


def _document(cells: dict[str, str]) -> dict[str, Any]:
    document: dict[str, Any] = {"name": cells.get("name", "").strip()}
    document["domains"] = _split(cells.get("domains", ""))
    if "contacts" in cells:
        document["contacts"] = _split(cells["contacts"])
    external_id = cells.get("externalId", "").strip()
    if external_id:
        document["externalId"] = external_id
    return document


def _split(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(";") if part.strip()]


def _at_line(error: ValidationError, lines: list[int]) -> ValidationError:
    """Name a row by its line in the file, in the field and in the rule alike."""
    rule = _ROW_REF.sub(lambda found: f"csv line {lines[int(found.group(1))]}", error.rule)
    found = _ROW_FIELD.fullmatch(error.field)
    if found is None:
        return ValidationError("csv", rule)
    line, field = lines[int(found.group(1))], found.group(2)
    return ValidationError(f"csv line {line}: {field}" if field else f"csv line {line}", rule)
