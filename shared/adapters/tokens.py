"""MSAL adapter: the consent flow and delegated access tokens for one user's connection.

Each connection has its own serialised MSAL token cache (kept encrypted by the caller). A
confidential client is built per use around that cache; a process-wide ``http_cache`` keeps
MSAL from fetching the authority's discovery document again each time. MSAL's result dicts
never leave this module: failures become :class:`ConsentError`, :class:`ReauthRequiredError`
or :class:`TransientError`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msal

from shared.errors import ConsentError, ReauthRequiredError, TransientError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

MAIL_SCOPES = ("User.Read", "Mail.ReadWrite", "Mail.Send", "MailboxSettings.Read")
"""Delegated scopes of a mail connection; MSAL adds ``offline_access``, ``openid``, ``profile``.

Drafts need ``Mail.ReadWrite``, and the daily limit reads the mailbox's time zone.
"""
CALENDAR_SCOPES = ("User.Read", "Calendars.ReadWrite")
"""Delegated scopes of a calendar connection, consented apart from mail; MSAL adds the rest."""
SCOPES_BY_KIND = {"mail": MAIL_SCOPES, "calendar": CALENDAR_SCOPES}
"""The scopes each kind of connection asks for (keys are the connection kinds)."""

REAUTH_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required"})
REAUTH_CODES = frozenset({50173, 65001, 70008, 700082, 50076, 50078, 50079})


@dataclass(frozen=True, slots=True)
class Grant:
    """What a completed consent gives: the token cache and who consented."""

    cache_json: str
    home_account_id: str
    tenant_id: str
    user_id: str
    username: str


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A delegated access token and the cache to persist when it changed."""

    token: str
    changed_cache_json: str | None


class MsalTokenClient:
    """Runs MSAL's auth-code flow and silent token acquisition."""

    def __init__(self, *, client_id: str, authority: str, client_secret: Callable[[], str]) -> None:
        self._client_id = client_id
        self._authority = authority
        self._client_secret = client_secret
        self._http_cache: dict[Any, Any] = {}

    def start_flow(
        self, scopes: Sequence[str], redirect_uri: str, login_hint: str
    ) -> dict[str, Any]:
        """Begin an auth-code flow with PKCE; the returned dict must be kept server-side."""
        flow: dict[str, Any] = self._app(None).initiate_auth_code_flow(
            list(scopes),
            redirect_uri=redirect_uri,
            login_hint=login_hint or None,
            state=secrets.token_urlsafe(32),
        )
        return flow

    def complete_flow(self, flow: dict[str, Any], auth_response: dict[str, str]) -> Grant:
        """Redeem the authorisation response for tokens.

        Raises:
            ConsentError: when consent was declined (``field`` ``error``), the response carries
                no code or Microsoft refused to redeem it (``code``), or the response does not
                match the flow (``state``).
        """
        has_code = bool(auth_response.get("code"))
        if not has_code and not auth_response.get("error"):
            msg = "missing_code"
            raise ConsentError(msg, "the callback carries no authorisation code", field="code")
        cache = msal.SerializableTokenCache()
        try:
            result = self._app(cache).acquire_token_by_auth_code_flow(flow, auth_response)
        except ValueError as error:
            msg = "state_mismatch"
            raise ConsentError(msg, "authorisation response does not match") from error
        if "error" in result:
            field = "code" if has_code else "error"
            raise ConsentError(str(result["error"]), _describe(result), field=field)
        claims = result.get("id_token_claims") or {}
        accounts = self._app(cache).get_accounts()
        if not accounts or not claims.get("oid") or not claims.get("tid"):
            msg = "no_account"
            raise ConsentError(msg, "Microsoft returned no account for the consent")
        return Grant(
            cache_json=cache.serialize(),
            home_account_id=str(accounts[0]["home_account_id"]),
            tenant_id=str(claims["tid"]),
            user_id=str(claims["oid"]),
            username=str(claims.get("preferred_username", "")),
        )

    def access_token(
        self,
        cache_json: str,
        home_account_id: str,
        scopes: Sequence[str],
        *,
        force_refresh: bool = False,
    ) -> AccessToken:
        """Return a delegated access token from the cache, refreshing it when needed.

        Raises:
            ReauthRequiredError: when Microsoft refuses the grant and the user must consent again.
            TransientError: when the identity platform fails in a way a retry may fix.
        """
        cache = msal.SerializableTokenCache()
        cache.deserialize(cache_json)
        app = self._app(cache)
        accounts = [a for a in app.get_accounts() if a.get("home_account_id") == home_account_id]
        if not accounts:
            msg = "no_account"
            raise ReauthRequiredError(msg, "the token cache holds no account")
        result = app.acquire_token_silent_with_error(
            list(scopes), accounts[0], force_refresh=force_refresh
        )
        if result is None:
            msg = "no_refresh_token"
            raise ReauthRequiredError(msg, "the token cache holds no usable token")
        if "error" in result:
            raise _token_error(result)
        changed = cache.serialize() if cache.has_state_changed else None
        return AccessToken(str(result["access_token"]), changed)

    def _app(self, cache: msal.SerializableTokenCache | None) -> msal.ConfidentialClientApplication:
        try:
            return msal.ConfidentialClientApplication(
                self._client_id,
                client_credential=self._client_secret(),
                authority=self._authority,
                token_cache=cache,
                http_cache=self._http_cache,
                instance_discovery=False,
            )
        except (ValueError, OSError) as error:
            msg = "the identity authority could not be reached"
            raise TransientError(msg) from error


def _token_error(result: dict[str, Any]) -> Exception:
    error = str(result.get("error", ""))
    codes = {
        int(code)
        for code in result.get("error_codes") or []
        if str(code).isascii() and str(code).isdigit()
    }
    if error in REAUTH_ERRORS or codes & REAUTH_CODES:
        code = f"{error}:{min(codes)}" if codes else error
        return ReauthRequiredError(code, _describe(result))
    return TransientError(f"token refresh failed: {_describe(result)}")


def _describe(result: dict[str, Any]) -> str:
    codes = ",".join(str(code) for code in result.get("error_codes") or [])
    return f"{result.get('error')} (AADSTS codes: {codes or 'none'})"
