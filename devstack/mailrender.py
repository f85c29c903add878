"""Write the generated mail as raw RFC 5322 bytes, one copy per mailbox it lands in.

:func:`render` writes what a mail system would store: the Sent Items copy keeps ``Bcc``, and
each Inbox copy gains a ``Received`` line naming its recipient. Display names are written the
ways real mail writes them: plain, quoted when they hold specials such as a comma, or RFC
2047-encoded when they are not ASCII and now and then when they hold a comma (which is then
encoded too, never bare). The body is plain text and HTML (``multipart/alternative``), with a
small PDF attached when the mail names an attachment; MIME boundaries derive from the mail
itself, so the bytes repeat from run to run.

Known limitations:
    Bodies come from a small set of English, German and French sentences and contain no
    images. Exchange-only fields (``conversationIndex``, categories, flags) are not produced.
"""

from __future__ import annotations

import html
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

_QP_UTF8 = Charset("utf-8")
_QP_UTF8.header_encoding = QP
_PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@dataclass(frozen=True, slots=True)
class Person:
    """Someone in the generated mail: a user of the tenant when ``upn`` is set.

    ``offset`` is the hours from UTC of the clock the person's mail is dated with.
    """

    name: str
    address: str
    offset: int = 1
    upn: str | None = None


@dataclass(slots=True)
class Mail:
    """One mail of a thread, before it is written as raw bytes for each mailbox it reaches."""

    sender: Person
    to: list[Person]
    subject: str
    sent: datetime
    lines: list[str]
    cc: list[Person] = field(default_factory=list)
    bcc: list[Person] = field(default_factory=list)
    message_id: str | None = None
    references: list[str] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    attachment: str | None = None


def _format_name(name: str, rng: random.Random) -> str:
    if name.isascii() and ("," not in name or rng.random() < 0.6):
        specials = re.search(r'[][\\()<>@,:;".]', name)
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"' if specials else name
    if "," in name:
        # An encoded comma (=2C) must never split the address (CASES.md BR-10).
        return _QP_UTF8.header_encode(name)
    return Header(name, "utf-8").encode()


def _address_list(people: list[Person], rng: random.Random) -> str:
    parts = [f"{_format_name(p.name, rng)} <{p.address}>" if p.name else p.address for p in people]
    return ",\r\n ".join(parts) if sum(map(len, parts)) > 70 else ", ".join(parts)


def render(mail: Mail, recipient: Person | None, tenant: str, rng: random.Random) -> bytes:
    """Write one copy of ``mail`` as raw bytes: Sent Items keeps Bcc, Inbox gains Received."""
    local_time = mail.sent.astimezone(timezone(timedelta(hours=mail.sender.offset)))
    headers: list[tuple[str, str]] = []
    if recipient is not None:
        arrival = format_datetime(
            (mail.sent + timedelta(seconds=rng.randint(2, 90))).astimezone(UTC)
        )
        host = mail.sender.address.rpartition("@")[2].lower()
        hop = f"from mail.{host} by mx.{tenant} with ESMTPS for <{recipient.address}>; {arrival}"
        headers.append(("Received", hop))
    headers += [("From", _address_list([mail.sender], rng)), ("To", _address_list(mail.to, rng))]
    if mail.cc:
        headers.append(("Cc", _address_list(mail.cc, rng)))
    if mail.bcc and recipient is None:
        headers.append(("Bcc", _address_list(mail.bcc, rng)))
    subject = (
        mail.subject
        if mail.subject.isascii()
        else Header(mail.subject, "utf-8").encode(linesep="\r\n")
    )
    headers += [("Subject", subject), ("Date", format_datetime(local_time))]
    if mail.message_id:
        headers.append(("Message-ID", mail.message_id))
    if mail.references:
        headers += [("In-Reply-To", mail.references[-1]), ("References", " ".join(mail.references))]
    head = "".join(f"{name}: {value}\r\n" for name, value in [*headers, *mail.headers])
    return head.encode("utf-8") + _body(mail).as_bytes(policy=SMTP)


def _body(mail: Mail) -> EmailMessage:
    # "Doe, Jane - City, ST" and "Jane Doe" both greet Jane.
    name = mail.to[0].name.split(" - ")[0]
    greeting = (name.split(",")[-1].split() or ["there"])[0]
    paragraphs = [
        f"Hi {greeting},",
        *mail.lines,
        f"Best regards,<br>{mail.sender.name or 'Billing'}",
    ]
    body = "".join(f"<p>{html.escape(p).replace('&lt;br&gt;', '<br>')}</p>" for p in paragraphs)
    document = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>'
        f'<body><div style="font-family:Calibri,Arial,sans-serif;font-size:11pt">{body}</div>'
        "</body></html>"
    )
    message = EmailMessage()
    message.set_content("\n\n".join(p.replace("<br>", "\n") for p in paragraphs) + "\n")
    message.add_alternative(document, subtype="html")
    if mail.attachment:
        message.add_attachment(
            _PDF, maintype="application", subtype="pdf", filename=mail.attachment
        )
    seed = f"{mail.message_id}{mail.subject}{mail.sent}".encode()
    for depth, part in enumerate(p for p in message.walk() if p.is_multipart()):
        part.set_boundary(f"_{depth:03d}_{zlib.crc32(seed):08x}_boundary_")
    return message
