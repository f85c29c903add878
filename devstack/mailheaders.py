"""Read the header fields of raw mail as the fields of Graph's ``message`` resource.

:mod:`devstack.mailload` parses a message, turns its header values into one-line text with
:func:`header_text` and :func:`unfold`, and reads these fields from them here: the addresses,
the dates, the thread's ``conversationId`` and the importance.

Address headers are split with ``email.utils.getaddresses`` on the raw header value and only
then are display names RFC 2047-decoded, so a comma inside a quoted or encoded name never splits
one address into two. Entries without a usable address (no ``@``) are dropped. A display name
that is missing is replaced by the address, as Exchange does.

Dates: ``sentDateTime`` comes from ``Date``, else from the newest parseable ``Received`` date;
``receivedDateTime`` comes from the newest parseable ``Received`` date, else from ``Date``.
When neither parses, both are ``1970-01-01T00:00:00Z`` (``FALLBACK_DATETIME``), so a load is
repeatable.

Known limitations:
    Header bytes that are not UTF-8 are read as Windows-1252. ``conversationId`` groups by the
    References root only; Exchange also uses Thread-Index and the subject, so its grouping can
    differ. Like a real one, the id is base64 and may contain ``/``, ``+`` and ``=``. A message
    without a usable From address gets ``"from": null``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.header import decode_header
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

FALLBACK_DATETIME = "1970-01-01T00:00:00Z"
_MESSAGE_ID = re.compile(r"<[^<>]+>")


def header_text(value: str) -> str:
    """Turn a value the bytes parser kept (a header, or a body it could not parse) into text."""
    # NOTE: the bytes parser keeps non-ASCII header bytes as surrogate escapes; turn them
    # back into text (UTF-8 per RFC 6532, else Windows-1252) so the JSON stays valid.
    if value.isascii():
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def unfold(value: str) -> str:
    """Join a folded header value back into one line."""
    return re.sub(r"[\r\n]", "", value)


def _values(headers: list[tuple[str, str]], name: str) -> list[str]:
    wanted = name.lower()
    return [value for key, value in headers if key.lower() == wanted]


def first_header(headers: list[tuple[str, str]], name: str) -> str | None:
    """Return the value of the first header called ``name`` (any case), or None."""
    values = _values(headers, name)
    return values[0] if values else None


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode bytes in ``charset`` (ASCII when none is given), else UTF-8, else Windows-1252."""
    for candidate in (charset or "ascii", "utf-8"):
        try:
            return data.decode(candidate)
        except (LookupError, ValueError):
            continue
    return data.decode("cp1252", "replace")


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words leniently; unknown charsets fall back to UTF-8/1252."""
    try:
        chunks = decode_header(value)
    except (HeaderParseError, ValueError):
        return value
    return "".join(
        chunk if isinstance(chunk, str) else decode_bytes(chunk, charset or "raw-unicode-escape")
        for chunk, charset in chunks
    )


def _recipients(values: list[str]) -> list[dict[str, Any]]:
    recipients = []
    for name, address in getaddresses(values):
        local, at, domain = address.rpartition("@")
        if not (at and local and domain):
            continue
        display = " ".join(decode_words(name).split()) or address
        recipients.append({"emailAddress": {"name": display, "address": address}})
    return recipients


def participants(headers: list[tuple[str, str]]) -> dict[str, Any]:
    """Return the sender and recipient fields: from, sender, to, cc, bcc and reply-to."""
    authors = _recipients(_values(headers, "From"))
    senders = _recipients(_values(headers, "Sender")) or authors
    return {
        "from": authors[0] if authors else None,
        "sender": senders[0] if senders else None,
        "toRecipients": _recipients(_values(headers, "To")),
        "ccRecipients": _recipients(_values(headers, "Cc")),
        "bccRecipients": _recipients(_values(headers, "Bcc")),
        "replyTo": _recipients(_values(headers, "Reply-To")),
    }


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return FALLBACK_DATETIME
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def dates(headers: list[tuple[str, str]]) -> dict[str, str]:
    """Return ``sentDateTime`` and ``receivedDateTime`` from ``Date`` and ``Received``."""
    sent = _parse_date(first_header(headers, "Date"))
    hops = [_parse_date(value.rpartition(";")[2]) for value in _values(headers, "Received")]
    newest_hop = max((hop for hop in hops if hop is not None), default=None)
    return {
        "sentDateTime": _iso(sent or newest_hop),
        "receivedDateTime": _iso(newest_hop or sent),
    }


def _message_ids(value: str | None) -> list[str]:
    if not value:
        return []
    found = [match.strip() for match in _MESSAGE_ID.findall(value)]
    return found or value.split()[:1]


def conversation_id(headers: list[tuple[str, str]], raw: bytes) -> str:
    """Derive an opaque, stable id from the thread root (References, In-Reply-To, Message-ID)."""
    for name in ("References", "In-Reply-To", "Message-ID"):
        ids = _message_ids(first_header(headers, name))
        if ids:
            root = ids[0].encode("utf-8", "replace")
            break
    else:
        # A message with no ids at all is a conversation of its own.
        root = raw
    digest = hashlib.sha256(root).digest()[:25]
    return "AAQk" + base64.b64encode(digest).decode("ascii")


def importance(headers: list[tuple[str, str]]) -> str:
    """Return ``high``, ``normal`` or ``low`` from whichever priority header the mail has."""
    words = {"high": "high", "urgent": "high", "low": "low", "non-urgent": "low"}
    for name in ("Importance", "Priority", "X-MSMail-Priority"):
        value = (first_header(headers, name) or "").strip().lower()
        if value in words:
            return words[value]
    priority = (first_header(headers, "X-Priority") or "").strip()[:1]
    return {"1": "high", "2": "high", "4": "low", "5": "low"}.get(priority, "normal")
