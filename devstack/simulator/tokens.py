"""Signing and checking the simulator's JWTs, and the claims Entra puts in each kind of token.

Known limitations: one signing key for the simulator's lifetime (no key rollover); access tokens
for Graph are ordinary verifiable JWTs, whereas Entra's Graph tokens carry a header nonce that makes
them unverifiable by anyone but Graph.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.simulator import ids

if TYPE_CHECKING:
    from devstack.simulator.directory import SimApp, SimUser

GRAPH_AUDIENCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
VAULT_AUDIENCE = "https://vault.azure.net"


class TokenInvalidError(Exception):
    """Raised when a presented token is malformed, badly signed, expired or for another audience."""


class SigningKey:
    """An RSA key pair that signs every token the simulator issues."""

    def __init__(self) -> None:
        self._private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = self._private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("=")  # noqa: S324 - a key id, as Entra's x5t

    def sign(self, claims: dict[str, Any]) -> str:
        """Return ``claims`` as an RS256 JWT with this key's ``kid`` in the header."""
        headers = {"typ": "JWT", "kid": self.kid, "x5t": self.kid}
        return jwt.encode(claims, self._private, algorithm="RS256", headers=headers)

    def verify(self, token: str, *, audience: str | tuple[str, ...], now: float) -> dict[str, Any]:
        """Return the claims of ``token`` after checking signature, audience and lifetime.

        Raises:
            TokenInvalidError: The token fails any check.
        """
        audiences = [audience] if isinstance(audience, str) else list(audience)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._private.public_key(),
                algorithms=["RS256"],
                audience=audiences,
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenInvalidError(type(exc).__name__) from exc
        if not claims.get("nbf", 0) - 300 <= now < claims.get("exp", 0):
            message = "Lifetime validation failed, the token is expired."
            raise TokenInvalidError(message)
        return claims

    def jwks(self) -> dict[str, Any]:
        """Return the JSON Web Key Set that publishes the public key."""
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._private.public_key()))
        jwk.update({"kid": self.kid, "x5t": self.kid, "use": "sig"})
        return {"keys": [jwk]}


def _times(now: float, expires_in: int, not_before: float | None = None) -> dict[str, int]:
    return {
        "iat": int(now),
        "nbf": int(not_before if not_before is not None else now),
        "exp": int(now) + expires_in,
    }


def pairwise_subject(oid: str, client_id: str) -> str:
    """Return the per-app ``sub`` Entra derives from a user and a client."""
    digest = hashlib.sha256(f"{oid}:{client_id}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def user_access_claims(
    *, issuer: str, user: SimUser, client_id: str, scopes: list[str], now: float, expires_in: int
) -> dict[str, Any]:
    """Return the claims of a delegated Graph access token."""
    return {
        "aud": GRAPH_AUDIENCE,
        "iss": issuer,
        **_times(now, expires_in),
        "appid": client_id,
        "idtyp": "user",
        "name": user.display_name,
        "oid": user.oid,
        "scp": " ".join(scopes),
        "sub": pairwise_subject(user.oid, GRAPH_APP_ID),
        "tid": user.tenant_id,
        "upn": user.upn,
        "unique_name": user.upn,
        "uti": ids.opaque_token(16),
        "ver": "1.0",
    }


def id_token_claims(
    *, issuer: str, user: SimUser, client_id: str, nonce: str | None, now: float
) -> dict[str, Any]:
    """Return the claims of an OpenID Connect id_token for ``client_id``."""
    claims = {
        "aud": client_id,
        "iss": issuer,
        **_times(now, 3600),
        "name": user.display_name,
        "oid": user.oid,
        "preferred_username": user.upn,
        "sub": pairwise_subject(user.oid, client_id),
        "tid": user.tenant_id,
        "uti": ids.opaque_token(16),
        "ver": "2.0",
    }
    if nonce:
        claims["nonce"] = nonce
    return claims


def app_access_claims(
    *, issuer: str, app: SimApp, tenant_id: str, audience: str, now: float, expires_in: int
) -> dict[str, Any]:
    """Return the claims of an app-only (client credentials) access token."""
    return {
        "aud": audience,
        "iss": issuer,
        **_times(now, expires_in),
        "appid": app.client_id,
        "azp": app.client_id,
        "idtyp": "app",
        "oid": app.principal_oid,
        "roles": [],
        "sub": app.principal_oid,
        "tid": tenant_id,
        "uti": ids.opaque_token(16),
        "ver": "1.0",
    }


def api_claims(
    *,
    issuer: str,
    audience: str,
    tenant_id: str,
    oid: str,
    roles: tuple[str, ...],
    upn: str | None,
    now: float,
    expires_in: int,
    not_before: float | None,
) -> dict[str, Any]:
    """Return the claims of a v2.0 token for the product's own API."""
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": issuer,
        **_times(now, expires_in, not_before),
        "oid": oid,
        "roles": list(roles),
        "sub": oid,
        "tid": tenant_id,
        "uti": ids.opaque_token(16),
        "ver": "2.0",
    }
    if upn is not None:
        claims["preferred_username"] = upn
    return claims


def client_info(user: SimUser) -> str:
    """Return the base64url ``client_info`` blob Entra adds when asked with ``client_info=1``."""
    raw = json.dumps({"uid": user.oid, "utid": user.tenant_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
