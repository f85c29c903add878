"""Authenticate API callers by their Microsoft Entra ID bearer token.

The token is checked with PyJWT against the authority's signing keys (JWKS): signature, issuer,
audience, expiry and not-before. Only asymmetric algorithms are accepted, so ``alg: none`` and
HMAC tokens signed with a public key are refused. Tenant, user and roles come from the
token's ``tid``, ``oid`` and ``roles`` claims, never from the request path or body.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import jwt

from shared.errors import AuthenticationError, ForbiddenError

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256"]
ADMIN_ROLE = "Admin"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as the validated token says."""

    tenant_id: str
    user_id: str
    roles: frozenset[str]
    username: str

    @property
    def is_admin(self) -> bool:
        """Tell whether the caller holds the tenant admin app role."""
        return ADMIN_ROLE in self.roles

    def require_admin(self) -> None:
        """Raise unless the caller is a tenant admin.

        Raises:
            ForbiddenError: when the caller lacks the admin role.
        """
        if not self.is_admin:
            msg = f"this action needs the {ADMIN_ROLE} role"
            raise ForbiddenError(msg)


class BearerAuthenticator:
    """Validates bearer tokens issued by the Microsoft identity platform for our API."""

    def __init__(self, authority_host: str, audience: str, *, leeway_s: int = 60) -> None:
        self._authority_host = authority_host.rstrip("/")
        self._audience = audience
        self._leeway_s = leeway_s
        jwks_url = f"{self._authority_host}/common/discovery/v2.0/keys"
        self._keys = jwt.PyJWKClient(jwks_url, ssl_context=ssl.create_default_context())

    def authenticate(self, authorization: str | None) -> Caller:
        """Return the caller an ``Authorization`` header proves.

        Raises:
            AuthenticationError: when the header is missing or the token is not valid.
        """
        token = _bearer(authorization)
        claims = self._decode(token)
        return _caller(claims)

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            msg = "bearer token is not a well-formed JWT"
            raise AuthenticationError(msg) from error
        if header.get("alg") not in ALGORITHMS:
            msg = f"bearer token algorithm must be one of {ALGORITHMS}"
            raise AuthenticationError(msg)
        tenant = unverified.get("tid")
        if not isinstance(tenant, str) or not tenant:
            msg = "bearer token has no tid claim"
            raise AuthenticationError(msg)
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=f"{self._authority_host}/{tenant}/v2.0",
                leeway=self._leeway_s,
                options={"require": ["exp", "iat", "iss", "aud", "tid", "oid"]},
            )
        except jwt.PyJWKClientError as error:
            msg = "bearer token signing key is unknown"
            raise AuthenticationError(msg) from error
        except jwt.PyJWTError as error:
            msg = f"bearer token rejected: {type(error).__name__}"
            raise AuthenticationError(msg) from error
        return claims


def _bearer(authorization: str | None) -> str:
    if not authorization:
        msg = "Authorization header with a Bearer token is required"
        raise AuthenticationError(msg)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        msg = "Authorization header must be 'Bearer <token>'"
        raise AuthenticationError(msg)
    return token.strip()


def _caller(claims: dict[str, Any]) -> Caller:
    roles = claims.get("roles") or []
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        msg = "bearer token roles claim must be a list of strings"
        raise AuthenticationError(msg)
    oid = claims.get("oid")
    if not isinstance(oid, str) or not oid:
        msg = "bearer token has no oid claim"
        raise AuthenticationError(msg)
    username = claims.get("preferred_username") or claims.get("upn") or ""
    # Entra writes both ids as lower-case GUIDs, and so does the directory: one spelling each.
    return Caller(
        tenant_id=str(claims["tid"]).lower(),
        user_id=oid.lower(),
        roles=frozenset(roles),
        username=str(username),
    )
