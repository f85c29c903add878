"""Identifiers shaped like the ones Microsoft 365 hands out.

Exchange item and folder ids are standard base64 (not base64url), so they contain ``/``, ``+`` and
``=``; clients must percent-encode them in URL paths and compare them case-sensitively. The
generators here always produce ids with all three characters so that careless clients break early.
"""

from __future__ import annotations

import base64
import secrets
import uuid

# Leading bytes that make the ids start like real ones ("AAMkA", "AAkAL", "AQMkA").
_REST_MESSAGE = b"\x00\x03\x24\x00"
_IMMUTABLE_MESSAGE = b"\x00\x09\x00\x2e"
_FOLDER = b"\x01\x03\x24\x00"
# 4 prefix bytes + 38 random bytes = 42; 42 % 3 == 0 would drop the padding, so use 37.
_RANDOM_BYTES = 37


def _exchange_id(prefix: bytes) -> str:
    while True:
        text = base64.b64encode(prefix + secrets.token_bytes(_RANDOM_BYTES)).decode("ascii")
        if "/" in text and "+" in text and text.endswith("="):
            return text


def rest_message_id() -> str:
    """Return a new folder-dependent (REST) message id."""
    return _exchange_id(_REST_MESSAGE)


def immutable_message_id() -> str:
    """Return a new immutable message id."""
    return _exchange_id(_IMMUTABLE_MESSAGE)


def folder_id() -> str:
    """Return a new mail folder id."""
    return _exchange_id(_FOLDER)


def change_key() -> str:
    """Return a new change key, as Exchange sets on every item change."""
    return base64.b64encode(b"\x0b\x00\x00\x00" + secrets.token_bytes(17)).decode("ascii")


def guid() -> str:
    """Return a random GUID in the lower-case form Entra uses."""
    return str(uuid.uuid4())


def opaque_token(size: int = 48) -> str:
    """Return a random URL-safe string for codes, refresh tokens and transaction ids."""
    return secrets.token_urlsafe(size)


def is_guid(text: str) -> bool:
    """Tell whether ``text`` is a GUID."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
