"""What a connection's state and last error mean, in words its user understands.

A connection records its last failure as a short code (``lastError``): an MSAL error with the
Microsoft identity platform's AADSTS number (``invalid_grant:700082``), or one of ours
(``job_poisoned``, ``throttled``...). :func:`explain` turns a code into one sentence saying what
happened and one saying what to do; :func:`connection_view` is the JSON shape of a connection
that ``GET /api/me/connections`` and ``GET /api/admin/connections`` answer with.

Known limitations: explanations are in English only; an unknown code gets a generic
explanation that quotes the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.adapters.queues import MAX_DEQUEUE_COUNT

if TYPE_CHECKING:
    from collections.abc import Mapping

    from shared.sync.connections import Connection


@dataclass(frozen=True, slots=True)
class Explanation:
    """What happened to a connection, and what its user should do about it."""

    summary: str
    action: str

    def as_json(self, code: str | None) -> dict[str, Any]:
        """Return the explanation as JSON, with the code it explains."""
        return {"code": code, "summary": self.summary, "action": self.action}


_COUNTS = ("once", "twice", "three times", "four times", "five times", "six times", "seven times")


def times_in_words(count: int) -> str:
    """Return how many times, in words up to seven (``"five times"``), else in digits."""
    return _COUNTS[count - 1] if 1 <= count <= len(_COUNTS) else f"{count} times"


_RECONNECT = "Connect your mailbox again from the app (Connections, then Connect mail)."
_WAIT = "Nothing: syncing resumes by itself within a few minutes."
_ADMIN = "If this lasts more than an hour, tell your administrator and give them the code."

EXPLANATIONS: Mapping[str, Explanation] = {
    "invalid_grant:700082": Explanation(
        "Microsoft ended this connection because it was not used for 90 days.", _RECONNECT
    ),
    "invalid_grant:70008": Explanation(
        "Microsoft's permission for this connection has expired.", _RECONNECT
    ),
    "invalid_grant:50173": Explanation(
        "Your Microsoft sign-in changed, for example after a password reset or when an "
        "administrator signed you out everywhere, so this connection stopped working.",
        _RECONNECT,
    ),
    "invalid_grant:65001": Explanation(
        "The permission for this app to read your mail was withdrawn.",
        "Connect your mailbox again and accept the permissions, or ask your Microsoft 365 "
        "administrator to grant them for your organisation.",
    ),
    "invalid_grant": Explanation(
        "Microsoft no longer accepts this connection's permission to read your mail.", _RECONNECT
    ),
    "interaction_required": Explanation(
        "Microsoft needs you to sign in again, for example to complete multi-factor "
        "authentication or to meet a new sign-in rule of your organisation.",
        _RECONNECT,
    ),
    "consent_required": Explanation(
        "This app does not have your permission to read your mail.",
        "Connect your mailbox again and accept the permissions.",
    ),
    "no_token": Explanation(
        "This connection holds no permission from Microsoft, for example because connecting "
        "was not finished.",
        _RECONNECT,
    ),
    "token_cache_unreadable": Explanation(
        "The stored permission for this connection can no longer be read, for example because "
        "the key that protected it was removed.",
        _RECONNECT,
    ),
    "no_account": Explanation(
        "Microsoft's answer did not include your account, so the connection cannot reach your "
        "mailbox.",
        "Connect your mailbox again, signing in with the same work account you use here.",
    ),
    "job_poisoned": Explanation(
        f"Syncing your mailbox failed {times_in_words(MAX_DEQUEUE_COUNT)} in a row; it is tried "
        "again every 10 minutes.",
        _ADMIN,
    ),
    "throttled": Explanation(
        "Microsoft asked us to slow down for your mailbox, so syncing waits a few minutes.", _WAIT
    ),
    "delta_reset_backoff": Explanation(
        "Microsoft asked us to read your mail folders again from the start; we wait a little "
        "before doing so.",
        _WAIT,
    ),
}
"""Explanations by error code; ``error:number`` codes fall back to ``error`` alone."""

STATE_EXPLANATIONS: Mapping[str, Explanation] = {
    "reauth_required": Explanation(
        "Microsoft needs you to give this app permission again.", _RECONNECT
    ),
    "revoked": Explanation("This connection was disconnected.", _RECONNECT),
    "error": Explanation("Syncing your mailbox keeps failing.", _ADMIN),
}
"""Explanations of a state that has no error code recorded."""


def explain(code: str | None) -> Explanation | None:
    """Return the explanation of an error code, a generic one when unknown; None for no code."""
    if not code:
        return None
    found = EXPLANATIONS.get(code) or EXPLANATIONS.get(code.split(":", 1)[0])
    if found is not None:
        return found
    return Explanation(f"Syncing your mailbox stopped with error code {code}.", _ADMIN)


MISSING_FOLDER = Explanation(
    "A folder you chose to sync no longer exists in your mailbox; the others sync as usual.",
    "Choose the folders to sync again (Connections, then Folders).",
)


def connection_view(connection: Connection) -> dict[str, Any]:
    """Return a connection as the API shows it to its user: state, last round, last error."""
    explanation = explain(connection.last_error)
    if explanation is None:
        explanation = STATE_EXPLANATIONS.get(connection.state)
    round_ = dict(connection.last_round)
    if explanation is None and _count(round_.get("missingFolders")):
        explanation = MISSING_FOLDER
    return {
        "kind": connection.kind,
        "state": connection.state,
        "folders": [{"id": f.folder_id, "name": f.name} for f in connection.folders],
        "lastSyncAt": connection.last_sync_at,
        "lastRound": round_,
        "kept": _count(round_.get("kept")),
        "dropped": _dropped(round_.get("dropped")),
        "lastError": connection.last_error,
        "lastErrorAt": connection.last_error_at if connection.last_error else None,
        "explanation": explanation.as_json(connection.last_error) if explanation else None,
    }


def admin_connection_view(connection: Connection) -> dict[str, Any]:
    """Return a connection as the admin listing shows it: the user's view plus who it is."""
    return {"userId": connection.user_id, "upn": connection.upn, **connection_view(connection)}


def _count(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _dropped(value: object) -> int | None:
    if not isinstance(value, dict):
        return None
    return sum(count for count in value.values() if isinstance(count, int))
