"""A mail sync job as it travels on the queue, and what one job saw and did.

A job is ``{"kind": "mail", "tenant", "user"}`` and, when it continues a round another job cut
at its page budget, ``"done"``: the folders whose delta round that round already finished, so
they are not read again (an empty delta page each) until the next round's job, which has none.

Known limitations: mail arriving in a finished folder while the round's continuations run waits
for the next round (10 minutes). A job re-queued for throttling or a delta reset carries the
``done`` list it was delivered with, not the folders it finished itself before it stopped, and a
job whose token Graph refused starts its folders again with a new token; those folders then
cost one empty delta page each again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from shared.errors import InvalidJobError
from shared.sync.connections import MAIL
from shared.sync.jobs import ConnectionJob

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

DONE_FIELD = "done"
MAX_DONE_FOLDERS = 50
"""As many folders as a connection may sync (``MAX_FOLDERS`` of the consent service)."""
MAX_FOLDER_ID = 512


@dataclass(slots=True)
class RoundStats:
    """What one job saw and did; summed into the connection's last-round record.

    Each folder thread counts into its own stats; the job adds them up once the folders end.
    """

    seen: int = 0
    kept: int = 0
    stored_new: int = 0
    removed_seen: int = 0
    unlinked: int = 0
    pages: int = 0
    missing_folders: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    complete: bool = True
    finished: list[str] = field(default_factory=list)
    """Folders whose round has ended, in this job or the jobs before it in the round."""

    def add(self, other: RoundStats) -> None:
        """Add the counts of a part of the round (a page, a folder) to these."""
        self.seen += other.seen
        self.kept += other.kept
        self.stored_new += other.stored_new
        self.removed_seen += other.removed_seen
        self.pages += other.pages
        self.missing_folders += other.missing_folders
        self.dropped.update(other.dropped)

    def as_record(self) -> dict[str, Any]:
        """Return the stats as a JSON-ready dict."""
        return {
            "seen": self.seen,
            "kept": self.kept,
            "storedNew": self.stored_new,
            "removedSeen": self.removed_seen,
            "unlinked": self.unlinked,
            "pages": self.pages,
            "missingFolders": self.missing_folders,
            "dropped": dict(self.dropped),
            "complete": self.complete,
        }


@dataclass(frozen=True, slots=True)
class MailJob(ConnectionJob):
    """A mail sync job as it travels on the queue, with the folders its round has finished.

    A job that re-queues itself after its page budget lists in ``done`` the folders whose delta
    round already ended, so the continuation does not read them again (each would cost an
    empty delta page) until the next round's job, which carries no ``done``.
    """

    KIND: ClassVar[str] = MAIL
    done: tuple[str, ...] = ()

    @classmethod
    def _parse_fields(cls, job: Mapping[str, Any]) -> dict[str, Any]:
        """Return the folders the round has finished, checked.

        Raises:
            InvalidJobError: when ``done`` is not a list of folder ids.
        """
        done = job.get(DONE_FIELD, [])
        if (
            not isinstance(done, list)
            or len(done) > MAX_DONE_FOLDERS
            or not all(_is_folder_id(folder) for folder in done)
        ):
            msg = (
                f"mail job field {DONE_FIELD!r} must be a list of at most {MAX_DONE_FOLDERS} "
                f"folder ids (printable ASCII, 1 to {MAX_FOLDER_ID} characters)"
            )
            raise InvalidJobError(msg)
        return {"done": tuple(dict.fromkeys(done))}

    def as_message(self) -> dict[str, Any]:
        """Return the job as queue JSON; ``done`` only when the round has finished folders."""
        # NOTE: zero-argument super() fails in a slots dataclass (the class is rebuilt).
        message = ConnectionJob.as_message(self)
        if self.done:
            message[DONE_FIELD] = list(self.done)
        return message


def continued_folders(finished: Sequence[str]) -> tuple[str, ...]:
    """Return the ``done`` list of a continuation: what :meth:`MailJob.parse` accepts.

    Each folder once, only ids a job may carry, and at most :data:`MAX_DONE_FOLDERS`, the ones
    finished last; a folder left out only costs the continuation one empty delta page.
    """
    folders = [folder for folder in dict.fromkeys(finished) if _is_folder_id(folder)]
    return tuple(folders[-MAX_DONE_FOLDERS:])


def _is_folder_id(value: Any) -> bool:
    """Tell whether a ``done`` entry could be a Graph folder id: printable ASCII, bounded."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_FOLDER_ID
        and value.isascii()
        and value.isprintable()
    )
