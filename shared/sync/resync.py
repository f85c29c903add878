"""Where a mail folder's fresh delta round starts, so that a cursor reset never skips mail.

Besides its links, a folder's cursor row keeps three instants (ISO 8601 UTC):

- ``roundStartedAt``: when the round now running (or last run) sent its first request;
- ``roundSince``: the ``receivedDateTime`` floor of the last round begun without a link;
- ``syncedThrough``: the ``roundStartedAt`` of the last round that reached its delta link.
  Every message received before it was listed by one round or another.
- ``roundFresh``: ``"1"`` while the round began without a link (it reconciles the folder).

When Graph forgets a folder's links (410), the row keeps these instants and loses only its
links. The fresh round that follows starts at the tenant's backfill start, or earlier: no later
than ``syncedThrough`` less :data:`RESYNC_MARGIN`, or, before any round of the folder ended, at
the floor the unfinished round used. It never starts before the connection's purge watermark.

Known limitations: a cursor row written before these instants were kept falls back, on its
reset, to its ``updatedAt`` less the margin, which can be later than the start of its round.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.sync.jobs import EPOCH, instant

if TYPE_CHECKING:
    from collections.abc import Mapping

RESYNC_MARGIN = timedelta(hours=1)
"""How far before the last ended round a reset starts: mail Graph listed late is read again."""

MARKS = ("roundStartedAt", "roundSince", "syncedThrough", "roundFresh")


def stamp(moment: datetime) -> str:
    """Return an instant as the ISO 8601 UTC text a cursor row stores."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def fresh_since(
    row: Mapping[str, Any] | None, *, backfill_start: datetime, purged_before: datetime
) -> datetime:
    """Return the ``receivedDateTime`` floor of a folder's round begun without a link."""
    floor = _floor(row or {})
    start = backfill_start if floor is None else min(backfill_start, floor)
    return max(start, purged_before)


def round_marks(
    row: Mapping[str, Any] | None,
    *,
    started: datetime | None,
    since: datetime | None,
    ended: bool,
) -> dict[str, str]:
    """Return the instants a cursor row keeps after saving one page of a round.

    Args:
        row: the cursor row as it was before the page, or None.
        started: when the round began, for its first page; None for a later page.
        since: the floor of a round begun without a link, for its first page; else None.
        ended: whether the page carried the round's delta link.
    """
    marks = {name: str((row or {}).get(name) or "") for name in MARKS}
    if started is not None:
        marks["roundStartedAt"] = stamp(started)
    if started is not None:
        # "1" while the round began without a link: its end reconciles the folder.
        marks["roundFresh"] = "1" if since is not None else ""
    if since is not None:
        marks["roundSince"] = stamp(since)
    if ended and marks["roundStartedAt"]:
        marks["syncedThrough"] = marks["roundStartedAt"]
    return marks


def reset_marks(row: Mapping[str, Any]) -> dict[str, str]:
    """Return the instants a cursor row keeps when a reset forgets its links."""
    marks = {name: str(row.get(name) or "") for name in MARKS}
    if not marks["syncedThrough"] and not marks["roundSince"]:
        # A row from before the marks were kept leaves its last write as the only clue.
        marks["syncedThrough"] = str(row.get("updatedAt") or "")
    return marks


def _floor(row: Mapping[str, Any]) -> datetime | None:
    """Return the latest instant a fresh round may start at to miss nothing, or None."""
    for name, margin in (("syncedThrough", RESYNC_MARGIN), ("roundSince", timedelta(0))):
        moment = instant(row.get(name))
        if moment != EPOCH:
            return moment - margin
    return None
