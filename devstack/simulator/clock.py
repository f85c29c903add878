"""The simulator's clock: wall time plus an offset that tests move forward."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class SimClock:
    """Wall-clock time shifted by ``advance`` calls, used for every issue and expiry check."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def advance(self, seconds: float) -> None:
        """Move the simulated time forward by ``seconds``."""
        with self._lock:
            self._offset += seconds

    def now(self) -> float:
        """Return the simulated time as epoch seconds."""
        with self._lock:
            return time.time() + self._offset

    def now_datetime(self) -> datetime:
        """Return the simulated time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now(), tz=UTC)

    def iso(self) -> str:
        """Return the simulated time in Graph's ISO-8601 form, e.g. ``2024-05-01T10:00:00Z``."""
        return self.now_datetime().strftime("%Y-%m-%dT%H:%M:%SZ")
