"""Outlook's per-mailbox concurrency limit: at most N Graph requests in flight per mailbox.

Outlook allows 4 concurrent requests per app and mailbox and answers the next one with 429
``ApplicationThrottled`` "MailboxConcurrency" (BR-06). The simulator counts requests in flight per
mailbox (the user the token acts for), refuses those over the limit, and records the peak it let
through and how many it refused, so tests can assert on both. A limit of ``None`` only counts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

DEFAULT_LIMIT = 4
DEFAULT_RETRY_AFTER_S = 2
THROTTLED_BODY = {
    "error": {
        "code": "ApplicationThrottled",
        "message": "Application is over its MailboxConcurrency limit.",
    }
}


@dataclass(slots=True)
class MailboxConcurrency:
    """Requests in flight, the peak admitted and the refusals, per mailbox oid."""

    limit: int | None = DEFAULT_LIMIT
    retry_after_s: int = DEFAULT_RETRY_AFTER_S
    in_flight: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, mailbox: str) -> bool:
        """Count a request in; False (and nothing counted in) when the mailbox is at its limit."""
        with self._lock:
            running = self.in_flight.get(mailbox, 0)
            if self.limit is not None and running >= self.limit:
                self.refused[mailbox] = self.refused.get(mailbox, 0) + 1
                return False
            self.in_flight[mailbox] = running + 1
            self.peak[mailbox] = max(self.peak.get(mailbox, 0), running + 1)
            return True

    def leave(self, mailbox: str) -> None:
        """Count a finished request out."""
        with self._lock:
            self.in_flight[mailbox] = max(self.in_flight.get(mailbox, 0) - 1, 0)

    def configure(self, limit: int | None, retry_after_s: int | None = None) -> None:
        """Set the limit (``None`` switches refusing off) and the ``Retry-After`` of refusals."""
        with self._lock:
            self.limit = limit
            if retry_after_s is not None:
                self.retry_after_s = retry_after_s

    def stats(self, mailbox: str) -> tuple[int, int]:
        """Return the peak admitted concurrency and the number of refusals of a mailbox."""
        with self._lock:
            return self.peak.get(mailbox, 0), self.refused.get(mailbox, 0)
