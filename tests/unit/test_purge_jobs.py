"""The purge job's walk under its watermark, on the table and queue stand-ins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.power.purge import PurgeJob, PurgeJobs, PurgeState
from tests.unit.fakes import FakeQueue, FakeTables

TENANT, USER = "tenant-1", "user-1"
ASKED = datetime(2026, 12, 1, 12, tzinfo=UTC)


class _Mailbox:
    """A releaser of a mailbox with nothing in it: each walk ends at once; it notes each."""

    def __init__(self) -> None:
        self.walks: list[datetime] = []

    def release_batch(self, *, before: datetime, **_: Any) -> tuple[dict[str, int], str | None]:
        self.walks.append(before)
        return {}, None


class _AskedAgainAtTheEnd(PurgeJobs):
    """Purge jobs where the user asks again just before the walk's end is written."""

    marks: dict[str, str]
    answered: list[PurgeJob]

    def _update(self, job: PurgeJob, state: PurgeState, *args: Any, **kwargs: Any) -> None:
        if state == PurgeState.COMPLETED and not self.answered:
            self.marks["mail"] = (ASKED + timedelta(minutes=5)).isoformat()
            self.answered.append(self.start(TENANT, USER, "mail", USER))
        super()._update(job, state, *args, **kwargs)


def _deliver_all(jobs: PurgeJobs, queue: FakeQueue) -> None:
    while queue.sent:
        sent = queue.sent.pop(0)
        jobs.run(sent.job)


def test_a_purge_asked_for_again_as_its_walk_ends_walks_under_the_new_time() -> None:
    """The second request is answered with the open job, which then walks once more."""
    # GIVEN a purge whose user asks again just as its first walk finishes
    tables, queue, mailbox = FakeTables(), FakeQueue(), _Mailbox()
    marks = {"mail": ASKED.isoformat()}
    jobs = _AskedAgainAtTheEnd(
        tables,  # type: ignore[arg-type]
        queue,  # type: ignore[arg-type]
        {"mail": mailbox},
        connection_key=lambda tenant, user, kind: f"{tenant}|{user}|{kind}",
        purged_before=lambda _tenant, _user, kind: marks[kind],
        clock=lambda: ASKED,
    )
    jobs.marks, jobs.answered = marks, []
    job = jobs.start(TENANT, USER, "mail", USER)

    # WHEN its deliveries run
    _deliver_all(jobs, queue)

    # THEN the second request got the same job, which walked under both times and completed
    assert [answer.job_id for answer in jobs.answered] == [job.job_id]
    assert mailbox.walks == [ASKED, ASKED + timedelta(minutes=5)]
    final = jobs.get(TENANT, job.job_id)
    assert final is not None
    assert final.state == PurgeState.COMPLETED


def test_a_purge_that_found_nothing_reports_zero_counts() -> None:
    """An empty mailbox's purge completes with removed and keptShared at zero."""
    tables, queue, mailbox = FakeTables(), FakeQueue(), _Mailbox()
    jobs = PurgeJobs(
        tables,  # type: ignore[arg-type]
        queue,  # type: ignore[arg-type]
        {"mail": mailbox},
        connection_key=lambda tenant, user, kind: f"{tenant}|{user}|{kind}",
        clock=lambda: ASKED,
    )
    job = jobs.start(TENANT, USER, "mail", USER)

    _deliver_all(jobs, queue)

    final = jobs.get(TENANT, job.job_id)
    assert final is not None
    assert final.state == PurgeState.COMPLETED
    assert dict(final.counts) == {"removed": 0, "keptShared": 0}
