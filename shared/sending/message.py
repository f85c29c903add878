"""An email to send, as the API takes it: checked whole, sized, and planned for Graph.

The body is ``{"to", "cc", "bcc", "subject", "html", "attachments", "replyTo", "kind",
"sequenceId"}``. Recipients are lists of address strings (a display name may come with each,
quoted when it holds a comma, BR-10), parsed strictly by
:func:`shared.matching.addresses.parse_recipient_input`. Attachments carry ``name``,
``contentType`` and ``contentBytes`` (standard base64).

Two size rules hold before any Graph call (BR-09). The tenant's limit counts raw bytes: the
UTF-8 body plus every attachment's decoded bytes. Graph's limit counts each request: the draft
(its JSON, body included) must stay under 4 MB, since a body cannot be split; attachments under
3 MB go inline, larger ones through an upload session in ranges.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from shared.adapters.graphsend import inline_attachment_body, request_bytes
from shared.errors import ValidationError
from shared.matching.addresses import Address, parse_recipient_input

if TYPE_CHECKING:
    from collections.abc import Mapping

MB = 1024 * 1024
GRAPH_REQUEST_LIMIT = 4 * MB
INLINE_LIMIT = 3 * MB
"""Attachments smaller than this go inline; Graph's upload sessions refuse them."""
MARKER_HEADER = "x-outbox-id"
"""The header each draft carries its outbox id in, so a retry finds a draft it made."""
OUTBOX_ID_LENGTH = 32
MAX_SUBJECT = 255
MAX_RECIPIENTS = 500
MAX_ATTACHMENTS = 50
MAX_NAME = 255
MAX_SEQUENCE_ID = 128
_FILE_NAME = re.compile(r"[^/\\\x00-\x1f\x7f]{1,255}")
"""A file name as a mail client may save it: no folders, no control characters."""
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][\w.+-]{0,126}/[A-Za-z0-9][\w.+-]{0,126}"
    r"(?: ?; ?[\w.+-]{1,64}=[\w.+\"-]{1,64}){0,4}"
)
"""A media type with at most four parameters, as ``text/plain; charset=utf-8``."""
FIELDS = frozenset(
    {"to", "cc", "bcc", "subject", "html", "attachments", "replyTo", "kind", "sequenceId"}
)


class Kind(StrEnum):
    """Who asked for the email: a person now, or an automated sequence."""

    MANUAL = "manual"
    AUTOMATIC = "automatic"


class TooLargeError(ValidationError):
    """Raised when an email is over the tenant's size limit or cannot fit Graph's requests."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """One file to attach."""

    name: str
    content_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """A checked email, ready to become a Graph draft."""

    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    subject: str
    html: str
    attachments: tuple[Attachment, ...]
    kind: Kind
    reply_to: str | None = None
    sequence_id: str | None = None

    @property
    def raw_bytes(self) -> int:
        """Return the bytes the tenant's size limit counts: the body and the attachments."""
        return len(self.html.encode("utf-8")) + sum(len(a.content) for a in self.attachments)

    @property
    def recipient_count(self) -> int:
        """Return how many recipients the email has."""
        return len(self.to) + len(self.cc) + len(self.bcc)

    def draft_json(self) -> dict[str, Any]:
        """Return the draft as ``POST /me/messages`` takes it, without attachments."""

        def listed(addresses: tuple[Address, ...]) -> list[dict[str, Any]]:
            return [{"emailAddress": {"name": a.name, "address": a.address}} for a in addresses]

        return {
            "subject": self.subject,
            "body": {"contentType": "html", "content": self.html},
            "toRecipients": listed(self.to),
            "ccRecipients": listed(self.cc),
            "bccRecipients": listed(self.bcc),
        }

    def marked_draft(self, item_id: str) -> dict[str, Any]:
        """Return the draft as the worker creates it: marked with its outbox id."""
        marker = [{"name": MARKER_HEADER, "value": item_id}]
        return {**self.draft_json(), "internetMessageHeaders": marker}

    def check_size(self, limit_bytes: int) -> None:
        """Refuse an email over the tenant's limit, or one part of which no Graph request takes.

        Every request the worker will make is measured as it will be sent: the marked draft
        (inside ``{"message": ...}`` for a reply) and each inline attachment, base64 and all.

        Raises:
            TooLargeError: naming ``body`` when over the tenant's limit, ``html`` when the
                draft would be 4 MB or more, ``attachments[i]`` when a file under 3 MB (too
                small for an upload session) would make an inline request of 4 MB or more.
        """
        if self.raw_bytes > limit_bytes:
            rule = (
                f"body and attachments total {self.raw_bytes} bytes, over the limit {limit_bytes}"
            )
            field = "body"
            raise TooLargeError(field, rule)
        draft = self.marked_draft("0" * OUTBOX_ID_LENGTH)
        size = request_bytes({"message": draft} if self.reply_to else draft)
        if size >= GRAPH_REQUEST_LIMIT:
            rule = f"must be under 4 MB for Graph to take the draft; it is {size} bytes as JSON"
            field = "html"
            raise TooLargeError(field, rule)
        for index, file in enumerate(self.attachments):
            if len(file.content) >= INLINE_LIMIT:
                continue
            size = request_bytes(inline_attachment_body(file.name, file.content_type, file.content))
            if size >= GRAPH_REQUEST_LIMIT:
                field = f"attachments[{index}]"
                rule = (
                    f"is too large to attach in one request ({size} bytes with its base64) and "
                    "too small for an upload session (under 3 MB); make it smaller or larger"
                )
                raise TooLargeError(field, rule)


def parse_email(body: Mapping[str, Any]) -> OutgoingEmail:
    """Check a request body and return the email it describes.

    Raises:
        ValidationError: naming the first field that breaks a rule.
    """
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise ValidationError(unknown[0], "is not a field of an email")
    to, cc, bcc = (_recipients(body.get(name), name) for name in ("to", "cc", "bcc"))
    if not (to or cc or bcc):
        field = "to"
        raise ValidationError(field, "must name at least one recipient (to, cc or bcc)")
    if len(to) + len(cc) + len(bcc) > MAX_RECIPIENTS:
        field = "to"
        raise ValidationError(field, f"at most {MAX_RECIPIENTS} recipients in all")
    kind = body.get("kind", Kind.MANUAL)
    if kind not in tuple(Kind):
        field = "kind"
        raise ValidationError(field, "must be manual or automatic")
    return OutgoingEmail(
        to=to,
        cc=cc,
        bcc=bcc,
        subject=_text(body, "subject", MAX_SUBJECT) or "",
        html=_text(body, "html", None) or "",
        attachments=_attachments(body.get("attachments")),
        kind=Kind(kind),
        reply_to=_text(body, "replyTo", 64),
        sequence_id=_text(body, "sequenceId", MAX_SEQUENCE_ID),
    )


def _text(body: Mapping[str, Any], name: str, max_chars: int | None) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(name, "must be text")
    if max_chars is not None and len(value) > max_chars:
        raise ValidationError(name, f"must be at most {max_chars} characters")
    return value


def _recipients(value: Any, name: str) -> tuple[Address, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError(name, "must be a list of email addresses")
    found: dict[str, Address] = {}
    for index, item in enumerate(value):
        for address in parse_recipient_input(item, f"{name}[{index}]"):
            # One recipient once per list, however many entries name them.
            found.setdefault(address.address.lower(), address)
    return tuple(found.values())


def _attachments(value: Any) -> tuple[Attachment, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_ATTACHMENTS:
        field = "attachments"
        raise ValidationError(field, f"must be a list of at most {MAX_ATTACHMENTS} files")
    return tuple(_attachment(item, f"attachments[{i}]") for i, item in enumerate(value))


def _attachment(item: Any, path: str) -> Attachment:
    if not isinstance(item, dict):
        raise ValidationError(path, "must be an object with name, contentType, contentBytes")
    name, kind, data = item.get("name"), item.get("contentType", ""), item.get("contentBytes")
    if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or name.strip(". ") == "":
        field = f"{path}.name"
        rule = f"must be a file name of 1 to {MAX_NAME} characters, no slashes or control codes"
        raise ValidationError(field, rule)
    if not isinstance(kind, str) or (kind and not _MEDIA_TYPE.fullmatch(kind)):
        field = f"{path}.contentType"
        raise ValidationError(field, "must be a media type such as text/plain")
    try:
        content = base64.b64decode(data if isinstance(data, str) else "", validate=True)
    except (binascii.Error, ValueError) as error:
        field = f"{path}.contentBytes"
        raise ValidationError(field, "must be standard base64") from error
    if not content:
        field = f"{path}.contentBytes"
        raise ValidationError(field, "must hold at least one byte")
    return Attachment(name=name, content_type=kind or "application/octet-stream", content=content)


def encode_email(email: OutgoingEmail) -> str:
    """Serialise a checked email for the outbox's payload blob."""

    def listed(addresses: tuple[Address, ...]) -> list[str]:
        return [json.dumps([a.name, a.address]) for a in addresses]

    return json.dumps(
        {
            "to": listed(email.to),
            "cc": listed(email.cc),
            "bcc": listed(email.bcc),
            "subject": email.subject,
            "html": email.html,
            "kind": str(email.kind),
            "attachments": [
                [a.name, a.content_type, base64.b64encode(a.content).decode("ascii")]
                for a in email.attachments
            ],
        }
    )


def decode_email(text: str) -> OutgoingEmail:
    """Read back an email written by :func:`encode_email`."""
    data = json.loads(text)

    def listed(items: list[str]) -> tuple[Address, ...]:
        pairs = [json.loads(item) for item in items]
        return tuple(Address(n, a, a.rpartition("@")[2]) for n, a in pairs)

    return OutgoingEmail(
        to=listed(data["to"]),
        cc=listed(data["cc"]),
        bcc=listed(data["bcc"]),
        subject=data["subject"],
        html=data["html"],
        attachments=tuple(Attachment(n, k, base64.b64decode(c)) for n, k, c in data["attachments"]),
        kind=Kind(data["kind"]),
    )
