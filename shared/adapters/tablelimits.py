r"""The one key encoder and the one size guard for everything written to Table Storage.

Table Storage refuses keys holding ``/ \ # ?`` or control characters and keys over 1 KiB, string
properties over 64 KiB measured in UTF-16, and entities over 1 MiB. Azurite does not enforce all
of these, so every write goes through :func:`guard_entity` and every key through
:func:`table_key`, and the tests check these functions directly.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.errors import StorageLimitError

if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_KEY_CHARS = 255
"""Encoded keys longer than this are replaced by a hash; the service allows 1 KiB."""

MAX_STRING_BYTES = 64_000
"""UTF-16 bytes per string property; the live service refused 65,536 (BR-12), so stay below."""

MAX_ENTITY_BYTES = 1_000_000
"""Bytes per entity by the service's own formula; the limit is 1 MiB, so keep a margin."""

MAX_PROPERTIES = 252

_ESCAPED = (
    frozenset("/\\#?%+~|") | {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}
)


def table_key(*parts: str) -> str:
    """Build a safe PartitionKey or RowKey from parts, deterministically and injectively.

    Forbidden and URL-troubling characters become ``~XX`` escapes (``~`` itself included, so
    two different inputs never meet), parts are joined with ``|``, and a result longer than
    :data:`MAX_KEY_CHARS` becomes ``~h`` and the SHA-256 hex of the escaped text.
    """
    # NOTE: ``|`` must be escaped by the same rule as ``~``; replacing it with ``~7C`` first
    # would let the ``~`` be escaped again, and ``"a|b"`` would meet ``"a~7Cb"``.
    escaped = "|".join(_escape(part) for part in parts)
    if len(escaped) <= MAX_KEY_CHARS:
        return escaped
    return "~h" + hashlib.sha256(escaped.encode("utf-8")).hexdigest()


def _escape(text: str) -> str:
    return "".join(f"~{ord(ch):02X}" if ch in _ESCAPED else ch for ch in text)


def key_order(key: str) -> bytes:
    """Return what sorts keys as Table Storage and Azurite do: by UTF-16 code unit.

    Python's own string order is by code point, which differs once a key mixes characters
    beyond U+FFFF with ones from U+E000 to U+FFFF.
    """
    return key.encode("utf-16-be", errors="surrogatepass")


def key_is_valid(key: str) -> bool:
    """Tell whether a key obeys the service's rules on characters and length."""
    if not key or utf16_size(key) > 1024:
        return False
    return not any(ch in "/\\#?" or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in key)


def utf16_size(text: str) -> int:
    """Return the size of a string as Table Storage counts it: UTF-16 bytes."""
    return len(text.encode("utf-16-le", errors="surrogatepass"))


def string_fits(text: str) -> bool:
    """Tell whether a string fits in one string property."""
    return utf16_size(text) <= MAX_STRING_BYTES


def entity_size(entity: Mapping[str, Any]) -> int:
    """Return an entity's size by the formula the Table service documents."""
    size = 4
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey"):
            size += utf16_size(str(value))
            continue
        size += 8 + utf16_size(name) + _value_size(value)
    return size


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return utf16_size(value) + 4
    if isinstance(value, bytes):
        return len(value) + 4
    if isinstance(value, datetime | int | float):
        return 8
    return 8


def guard_entity(table: str, entity: Mapping[str, Any]) -> None:
    """Check an entity against every Table Storage limit before it is written.

    Raises:
        StorageLimitError: naming the table, the key or property and the limit it breaks.
    """
    for key_name in ("PartitionKey", "RowKey"):
        if not key_is_valid(str(entity.get(key_name, ""))):
            msg = f"{table}.{key_name}"
            raise StorageLimitError(msg, "must be a valid table key")
    if len(entity) - 2 > MAX_PROPERTIES:
        raise StorageLimitError(table, f"an entity holds at most {MAX_PROPERTIES} properties")
    for name, value in entity.items():
        if isinstance(value, str) and not string_fits(value):
            rule = f"string properties hold at most {MAX_STRING_BYTES} UTF-16 bytes"
            msg = f"{table}.{name}"
            raise StorageLimitError(msg, rule)
        if isinstance(value, bytes) and len(value) > MAX_STRING_BYTES:
            msg = f"{table}.{name}"
            raise StorageLimitError(msg, "binary properties hold at most 64,000 bytes")
    if entity_size(entity) > MAX_ENTITY_BYTES:
        raise StorageLimitError(table, f"an entity holds at most {MAX_ENTITY_BYTES} bytes")
