"""Unit tests for shared.sync.resync: where a mail folder's fresh delta round starts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.sync.resync import RESYNC_MARGIN, fresh_since, reset_marks, round_marks

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
BACKFILL = NOW - timedelta(days=30)
NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def _text(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def test_fresh_since_without_a_row_is_the_backfill_start():
    """A folder never synced starts at the backfill start."""
    assert fresh_since(None, backfill_start=BACKFILL, purged_before=NEVER) == BACKFILL


def test_fresh_since_reads_back_past_the_backfill_to_the_last_ended_round():
    """A round that ended before the backfill start pulls the fresh round back to it."""
    # GIVEN a folder whose last round ended 40 days ago
    row = {"syncedThrough": _text(NOW - timedelta(days=40))}

    # WHEN its fresh round's floor is chosen
    since = fresh_since(row, backfill_start=BACKFILL, purged_before=NEVER)

    # THEN it is an hour before that round
    assert since == NOW - timedelta(days=40) - RESYNC_MARGIN


def test_fresh_since_with_zero_backfill_starts_before_the_last_round():
    """With no backfill, a reset still reads what came since the last ended round."""
    row = {"syncedThrough": _text(NOW - timedelta(minutes=10))}
    since = fresh_since(row, backfill_start=NOW, purged_before=NEVER)
    assert since == NOW - timedelta(minutes=10) - RESYNC_MARGIN


def test_fresh_since_before_any_round_ended_uses_the_unfinished_rounds_floor():
    """A first round cut by a reset starts again where it began, not at today's backfill."""
    row = {"roundSince": _text(NOW - timedelta(days=2)), "roundStartedAt": _text(NOW)}
    since = fresh_since(row, backfill_start=NOW, purged_before=NEVER)
    assert since == NOW - timedelta(days=2)


def test_fresh_since_never_starts_before_the_purge():
    """The purge watermark wins over any earlier floor."""
    purged = NOW - timedelta(days=1)
    row = {"syncedThrough": _text(NOW - timedelta(days=40))}
    assert fresh_since(row, backfill_start=BACKFILL, purged_before=purged) == purged


def test_round_marks_note_a_rounds_start_and_its_end():
    """The first page of a round notes its start; the last page makes it the synced-through."""
    # GIVEN a round begun without a link, whose first page is also its last
    marks = round_marks(None, started=NOW, since=BACKFILL, ended=True)

    # THEN the row keeps the round's floor, start and end
    assert marks == {
        "roundStartedAt": _text(NOW),
        "roundSince": _text(BACKFILL),
        "syncedThrough": _text(NOW),
        "roundFresh": "1",
    }


def test_round_marks_of_an_unfinished_round_keep_the_last_ended_one():
    """A page with a next link leaves the last ended round as it was."""
    row = {"roundStartedAt": _text(NOW), "syncedThrough": _text(NOW - timedelta(days=1))}
    marks = round_marks(row, started=None, since=None, ended=False)
    assert marks["syncedThrough"] == _text(NOW - timedelta(days=1))
    assert marks["roundStartedAt"] == _text(NOW)


def test_reset_marks_of_an_old_row_fall_back_to_its_last_write():
    """A row written before the marks were kept is taken as synced to its last write."""
    marks = reset_marks({"updatedAt": _text(NOW), "deltaLink": "d"})
    assert marks["syncedThrough"] == _text(NOW)
