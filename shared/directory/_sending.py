"""A tenant's sending settings: the content size limit, the daily limit, do-not-disturb hours.

``sendSizeLimitBytes`` (raw bytes of body and attachments, default 2 MB, at most 8 MB),
``dailyAutomaticLimit`` (automatic emails per user and local day, default 200) and
``doNotDisturb`` (``{"start": "21:00", "end": "08:00", "timeZone": "sender"}``, or null).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.directory.model import (
    DEFAULT_DAILY_AUTOMATIC_LIMIT,
    DEFAULT_SEND_SIZE_LIMIT,
    MAX_SEND_SIZE_LIMIT,
)
from shared.errors import ValidationError
from shared.sending.schedule import DoNotDisturb, parse_do_not_disturb

if TYPE_CHECKING:
    from collections.abc import Mapping

SENDING_FIELDS = frozenset({"sendSizeLimitBytes", "dailyAutomaticLimit", "doNotDisturb"})
MAX_DAILY_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class SendingDraft:
    """A tenant's sending settings as the admin sent them, checked."""

    send_size_limit: int = DEFAULT_SEND_SIZE_LIMIT
    daily_automatic_limit: int = DEFAULT_DAILY_AUTOMATIC_LIMIT
    do_not_disturb: DoNotDisturb | None = None


def _whole(fields: Mapping[str, Any], name: str, default: int, high: int) -> int:
    value = fields.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise ValidationError(name, f"must be a whole number from 1 to {high}")
    return value


def sending_draft(fields: Mapping[str, Any]) -> SendingDraft:
    """Check the sending settings of a tenant document; left out, they take their defaults.

    Raises:
        ValidationError: naming the setting that breaks a rule.
    """
    return SendingDraft(
        send_size_limit=_whole(
            fields, "sendSizeLimitBytes", DEFAULT_SEND_SIZE_LIMIT, MAX_SEND_SIZE_LIMIT
        ),
        daily_automatic_limit=_whole(
            fields, "dailyAutomaticLimit", DEFAULT_DAILY_AUTOMATIC_LIMIT, MAX_DAILY_LIMIT
        ),
        do_not_disturb=parse_do_not_disturb(fields.get("doNotDisturb")),
    )


def sending_properties(draft: SendingDraft) -> dict[str, Any]:
    """Return the tenant entity's properties for the sending settings."""
    window = draft.do_not_disturb
    return {
        "sendSizeLimitBytes": draft.send_size_limit,
        "dailyAutomaticLimit": draft.daily_automatic_limit,
        "doNotDisturb": json.dumps(window.as_json()) if window else "",
    }


def sending_of(entity: Mapping[str, Any]) -> SendingDraft:
    """Read the sending settings of a tenant entity; absent ones take their defaults."""
    size = entity.get("sendSizeLimitBytes")
    daily = entity.get("dailyAutomaticLimit")
    window = entity.get("doNotDisturb")
    return SendingDraft(
        send_size_limit=size if isinstance(size, int) else DEFAULT_SEND_SIZE_LIMIT,
        daily_automatic_limit=daily if isinstance(daily, int) else DEFAULT_DAILY_AUTOMATIC_LIMIT,
        do_not_disturb=parse_do_not_disturb(json.loads(window)) if window else None,
    )
