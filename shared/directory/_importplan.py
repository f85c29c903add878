"""Decide, before anything is written, which stored company each imported row updates.

A row that gives an ``externalId`` updates the company with that id. When no company has it
yet, the row adopts a company of the same exact name that has no ``externalId`` (so a file
imported once without ids and later with them does not duplicate it), else it creates one. A
row without an ``externalId`` updates the one company with the same exact name, else creates
one. A name shared by several stored companies is refused, as are two rows that resolve to
the same stored company.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.directory._entities import company_id_of
from shared.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from shared.directory.validation import CompanyDraft

MODES = ("upsert", "create")
"""``upsert`` creates or updates; ``create`` refuses the whole import if any row matches."""


@dataclass(frozen=True, slots=True)
class PlannedRow:
    """One imported row: the company id it writes and the stored company it updates, if any."""

    draft: CompanyDraft
    company_id: str
    stored: Mapping[str, Any] | None


def plan_import(
    drafts: Sequence[CompanyDraft],
    stored: Sequence[Mapping[str, Any]],
    *,
    mode: str = "upsert",
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> list[PlannedRow]:
    """Match every row to a stored company, or give it a new id.

    Raises:
        ValidationError: naming the row (``companies[3].name``) whose match is ambiguous, taken
            by an earlier row, or, in ``create`` mode, exists already.
    """
    if mode not in MODES:
        field, rule = "mode", f"must be one of {', '.join(MODES)}"
        raise ValidationError(field, rule)

    by_external = {entity["externalId"]: entity for entity in stored if entity.get("externalId")}
    by_name: defaultdict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for entity in stored:
        by_name[str(entity.get("name", ""))].append(entity)

    claimed: dict[str, int] = {}
    planned: list[PlannedRow] = []
    for index, draft in enumerate(drafts):
        path = f"companies[{index}]"
        match = _match(draft, by_external, by_name, path)
        if match is None:
            planned.append(PlannedRow(draft, new_id(), None))
            continue
        company_id = company_id_of(match)
        _check_claim(claimed, company_id, index, mode)
        planned.append(PlannedRow(draft, company_id, match))
    return planned


def _match(
    draft: CompanyDraft,
    by_external: Mapping[str, Mapping[str, Any]],
    by_name: Mapping[str, list[Mapping[str, Any]]],
    path: str,
) -> Mapping[str, Any] | None:
    if draft.external_id and draft.external_id in by_external:
        return by_external[draft.external_id]

    candidates = by_name.get(draft.name, [])
    if draft.external_id:
        candidates = [entity for entity in candidates if not entity.get("externalId")]
    if len(candidates) > 1:
        field = f"{path}.name"
        rule = f"matches {len(candidates)} existing companies; give this row an externalId"
        raise ValidationError(field, rule)
    return candidates[0] if candidates else None


def _check_claim(claimed: dict[str, int], company_id: str, index: int, mode: str) -> None:
    path = f"companies[{index}]"
    if mode == "create":
        rule = f"matches existing company {company_id}; import with mode upsert to update it"
        raise ValidationError(path, rule)
    first = claimed.setdefault(company_id, index)
    if first != index:
        raise ValidationError(path, f"names the same company as companies[{first}]")
