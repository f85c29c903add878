"""Notices to users, sent once when a connection stops working until they consent again (BR-08).

When Microsoft refuses a connection's refresh token for good, the connection moves to
``reauth_required`` and one notice goes out on the ``notifications`` queue for the customer
platform to deliver (in the app, by email, as it sees fit). The notice names the tenant, the
user, the connection kind, the failure code and its explanation in words; it carries no
address, token or mail content. Only the job that makes the transition sends it, so a user gets
one notice per loss of consent, however many jobs find the connection broken.

Message contract (JSON, base64 on the queue like every job)::

    {"type": "connection.reauth_required", "tenant": "<tid>", "user": "<oid>",
     "connection": "mail" | "calendar", "code": "invalid_grant:700082",
     "summary": "...", "action": "...", "at": "<ISO-8601 UTC>"}

Known limitations: nothing in this product consumes the queue; the platform does. A notice that
cannot be queued is logged as a warning and not sent again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.adapters.queues import NOTIFICATIONS_QUEUE
from shared.errors import TransientError
from shared.sync.explain import explain

if TYPE_CHECKING:
    from collections.abc import Mapping

    from shared.sync.connections import Connection

logger = logging.getLogger(__name__)

REAUTH_REQUIRED_NOTICE = "connection.reauth_required"


class NoticeSender(Protocol):
    """The part of ``JobQueue`` notices need."""

    def send(self, queue: str, job: Mapping[str, Any], *, delay_s: int = 0) -> None:
        """Send one message."""
        ...


class ReauthNotifier:
    """Tells a user, once per loss of consent, that a connection needs them to consent again."""

    def __init__(self, queue: NoticeSender) -> None:
        self._queue = queue

    def __call__(self, connection: Connection, code: str) -> None:
        """Queue the notice; a failure to queue is logged, never raised over the job's outcome."""
        words = explain(code)
        notice: dict[str, Any] = {
            "type": REAUTH_REQUIRED_NOTICE,
            "tenant": connection.tenant_id,
            "user": connection.user_id,
            "connection": connection.kind,
            "code": code,
            "summary": words.summary if words else "",
            "action": words.action if words else "",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        extra = {"tenant": connection.tenant_id, "user": connection.user_id, "code": code}
        try:
            self._queue.send(NOTIFICATIONS_QUEUE, notice)
        except TransientError:
            logger.warning("reauth notice not queued", extra=extra)
            return
        logger.info("reauth notice queued", extra=extra)
