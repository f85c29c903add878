"""Exception types of the product, grouped by what the caller does about them.

Adapters translate SDK, MSAL and HTTP failures into these classes with ``raise ... from ...``;
nothing above the adapter layer sees an SDK exception. Messages name the thing that failed by
its identifier and never carry mail content, addresses or tokens.
"""

from __future__ import annotations

import math

MAX_RETRY_AFTER_S = 3600
"""Longest wait a ``Retry-After`` is taken for: a longer one waits this long and asks again.

Storage Queues refuse a visibility delay over 7 days, so honouring any ``Retry-After`` as given
would fail the send and, five deliveries later, poison the job."""


class SyncError(Exception):
    """Base class of every error the product raises on purpose."""


class ConfigError(SyncError):
    """Raised at start-up when settings are missing or malformed; lists every problem at once."""


class ValidationError(SyncError):
    """Raised when caller input breaks a rule; names the field and the rule.

    Attributes:
        field: the dotted path of the offending field, for example ``domains[2]``.
        rule: a short statement of what the field must be.
    """

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class StorageLimitError(ValidationError):
    """Raised when an entity would break a Table Storage limit: a product bug, never user input."""


class NotFoundError(SyncError):
    """Raised when an entity the caller named does not exist (or belongs to another tenant)."""


class ConflictError(SyncError):
    """Raised when a conditional write lost a race or an entity already exists."""


class AuthenticationError(SyncError):
    """Raised when an API caller's bearer token is missing or invalid."""


class ForbiddenError(SyncError):
    """Raised when an authenticated caller lacks the role or permission for an action."""


_CALLBACK_PARAMETER_OF = {
    "missing_state": "state",
    "unknown_state": "state",
    "replayed_state": "state",
    "expired_state": "state",
    "state_mismatch": "state",
    "unreadable_state": "state",
}


class ConsentError(SyncError):
    """Raised when a consent callback cannot complete: bad, replayed or expired state, declined.

    Attributes:
        code: the reason, such as ``expired_state`` or Microsoft's ``access_denied``.
        field: the callback's query parameter at fault (``state``, ``code`` or ``error``), or
            ``None`` when no single parameter is (the wrong account consented, say). Left out,
            it follows from the code for the state's own reasons.
    """

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field if field is not None else _CALLBACK_PARAMETER_OF.get(code)


class ReauthRequiredError(SyncError):
    """Raised when Microsoft refuses the stored grant and the user must consent again."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class AccessTokenRejectedError(SyncError):
    """Raised when Graph answers 401 to an access token; a forced refresh may fix it."""


class ThrottledError(SyncError):
    """Raised when Graph keeps throttling past the in-invocation retry budget."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = capped_wait(retry_after_s)

    @property
    def delay_s(self) -> int:
        """The wait in whole seconds, rounded up: at least 1, at most the cap."""
        return max(1, math.ceil(self.retry_after_s))


class TransientError(SyncError):
    """Raised for failures that a later retry of the same job is expected to fix."""


class DeltaCursorExpiredError(SyncError):
    """Raised when Graph refuses a delta or next link (410, syncStateNotFound, resyncRequired)."""


class GraphRequestError(SyncError):
    """Raised when Graph answers a request with an error that a retry will not fix."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class InvalidJobError(SyncError):
    """Raised when a queue message cannot be understood; it must go to the poison queue."""


class SecretStoreError(SyncError):
    """Raised when Key Vault cannot give or keep a secret the product needs."""


class SecretVersionUnavailableError(SecretStoreError):
    """Raised when one version of a secret that still exists is gone or disabled in Key Vault."""


class SealedValueUnreadableError(SecretStoreError):
    """Raised when a sealed value will never open: its key version is gone, or it is forged."""


def capped_wait(seconds: float) -> float:
    """Return a wait in seconds within 0 and :data:`MAX_RETRY_AFTER_S`.

    A wait too long to count (infinite) or not a number at all is taken as the cap, so no
    consumer ever turns it into an integer that overflows or a delay a queue refuses.
    """
    if math.isnan(seconds):
        return float(MAX_RETRY_AFTER_S)
    return min(max(seconds, 0.0), float(MAX_RETRY_AFTER_S))
