"""What the identity endpoints remember between calls: consent requests, codes, refresh tokens."""

from __future__ import annotations

from dataclasses import dataclass

from devstack.simulator import ids

CODE_LIFETIME_S = 600
TRANSACTION_LIFETIME_S = 3600
REFRESH_LIFETIME_S = 90 * 24 * 3600


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """A validated authorize request waiting for the user's decision on the consent page."""

    txn: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str
    response_mode: str
    user_oid: str | None
    created: float


@dataclass(slots=True)
class AuthCode:
    """An authorization code; single use, valid for ten minutes."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    nonce: str | None
    code_challenge: str
    user_oid: str
    issued: float
    redeemed: bool = False


@dataclass(frozen=True, slots=True)
class RefreshGrant:
    """A refresh token's record; the token text itself is only the key."""

    client_id: str
    user_oid: str
    scopes: tuple[str, ...]
    issued: float

    @property
    def expires(self) -> float:
        """Return when this refresh token stops working."""
        return self.issued + REFRESH_LIFETIME_S


class GrantStore:
    """Transactions, codes and refresh tokens by their opaque keys; the caller holds the lock."""

    def __init__(self) -> None:
        self._transactions: dict[str, AuthorizeRequest] = {}
        self._codes: dict[str, AuthCode] = {}
        self._refresh: dict[str, RefreshGrant] = {}
        # (user oid, client id or "*") -> AADSTS code refresh attempts fail with.
        self._revoked: dict[tuple[str, str], tuple[str, int]] = {}

    def put_transaction(self, request: AuthorizeRequest) -> None:
        """Keep an authorize request until the consent decision arrives."""
        self._transactions[request.txn] = request

    def pop_transaction(self, txn: str, now: float) -> AuthorizeRequest | None:
        """Remove and return a live transaction, or None when unknown or stale."""
        request = self._transactions.pop(txn, None)
        if request is None or now - request.created > TRANSACTION_LIFETIME_S:
            return None
        return request

    def new_code(self, code: AuthCode) -> str:
        """Store ``code`` and return its opaque text."""
        text = ids.opaque_token()
        self._codes[text] = code
        return text

    def find_code(self, text: str) -> AuthCode | None:
        """Return the record behind a code, redeemed or not, or None."""
        return self._codes.get(text)

    def new_refresh_token(self, grant: RefreshGrant) -> str:
        """Store ``grant`` and return its opaque refresh token."""
        text = ids.opaque_token(64)
        self._refresh[text] = grant
        return text

    def find_refresh(self, text: str) -> RefreshGrant | None:
        """Return the record behind a refresh token, or None."""
        return self._refresh.get(text)

    def revoke(
        self, user_oid: str, client_id: str | None, error_code: int, error: str = "invalid_grant"
    ) -> None:
        """Make every refresh token of a user (for one client, or all) fail with ``error``."""
        self._revoked[(user_oid, client_id or "*")] = (error, error_code)

    def restore(self, user_oid: str) -> None:
        """Lift every revocation for a user, as a new consent does."""
        for key in [k for k in self._revoked if k[0] == user_oid]:
            del self._revoked[key]

    def revocation(self, user_oid: str, client_id: str) -> tuple[str, int] | None:
        """Return the error and AADSTS code a revoked user's refresh fails with, or None."""
        return self._revoked.get((user_oid, client_id), self._revoked.get((user_oid, "*")))
