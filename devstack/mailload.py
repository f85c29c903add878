"""Turn raw RFC 5322 mail into the message JSON that Microsoft Graph returns.

The Microsoft 365 simulator serves mailboxes filled from real mail files and from ``mailgen``;
this module does the translation, so both sources read like Graph's ``message`` resource
(without ``id`` and ``parentFolderId``, which the simulator assigns).

Address headers are split with ``email.utils.getaddresses`` on the raw header value and only
then are display names RFC 2047-decoded, so a comma inside a quoted or encoded name never splits
one address into two. Entries without a usable address (no ``@``) are dropped. A display name
that is missing is replaced by the address, as Exchange does.

Dates: ``sentDateTime`` comes from ``Date``, else from the newest parseable ``Received`` date;
``receivedDateTime`` comes from the newest parseable ``Received`` date, else from ``Date``.
When neither parses, both are ``1970-01-01T00:00:00Z`` (``FALLBACK_DATETIME``), so a load is
repeatable.

Known limitations:
    The body is the first HTML part that is not an attachment, else the first plain-text part;
    Outlook would join several inline text parts of a ``multipart/mixed`` message, this does
    not. HTML is passed through as received: Graph strips unsafe HTML, this does not. Inline
    parts (``Content-Disposition: inline`` or inside ``multipart/related``) never count as
    attachments, even where Exchange might list them. Header bytes that are not UTF-8 are read
    as Windows-1252. ``conversationIndex``, ``uniqueBody`` and categories are not produced.
    ``conversationId`` groups by the References root only; Exchange also uses Thread-Index and
    the subject, so its grouping can differ. Like a real one, the id is base64 and may contain
    ``/``, ``+`` and ``=``. A message without a usable From address gets ``"from": null``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import mailbox
import re
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.header import decode_header
from email.parser import BytesParser
from email.policy import Compat32
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from email.message import Message
    from pathlib import Path

logger = logging.getLogger(__name__)

FALLBACK_DATETIME = "1970-01-01T00:00:00Z"
PREVIEW_LENGTH = 255
_MESSAGE_ID = re.compile(r"<[^<>]+>")
_PLAIN_SUFFIX = re.compile(r"\.[a-z0-9]{1,5}")
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
_MBOX_SUFFIXES = frozenset({".mbox", ".mbx"})


class MailLoadError(ValueError):
    """Raised when a file or a byte string cannot be read as mail at all."""


class LoadFailure(NamedTuple):
    """A file that was skipped during a load, and why."""

    path: Path
    reason: str


class _RawHeaderPolicy(Compat32):
    """Compat32, but header values come back exactly as stored, never as ``Header`` objects."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        """Return the stored value untouched."""
        return value


_PARSER = BytesParser(policy=_RawHeaderPolicy())


def graph_message_from_eml(raw: bytes) -> dict[str, Any]:
    """Build a Graph-shaped message (no ``id``) from one raw RFC 5322 message.

    Raises:
        MailLoadError: when the bytes contain no header fields at all.
    """
    message, structured = _parse(raw)
    headers = [(name, _unfold(_header_text(value))) for name, value in message.items()]
    if not headers:
        reason = "no header fields found; the input is not an RFC 5322 message"
        raise MailLoadError(reason)

    graph: dict[str, Any] = {}
    message_id = (_first(headers, "Message-ID") or "").strip()
    if message_id:
        graph["internetMessageId"] = message_id
    graph["conversationId"] = _conversation_id(headers, raw)
    graph["subject"] = _decode_words(_first(headers, "Subject") or "")
    graph.update(_participants(headers))
    graph.update(_dates(headers))
    graph.update(_content(message, structured=structured))
    graph["importance"] = _importance(headers)
    graph["isDraft"] = False
    graph["isRead"] = True
    graph["internetMessageHeaders"] = [{"name": name, "value": value} for name, value in headers]
    return graph


def iter_mail_files(
    path: Path, *, on_error: Callable[[Path, str], None] | None = None
) -> Iterator[tuple[Path, bytes]]:
    """Yield ``(file, raw message)`` for a mail file or every mail file under a directory.

    ``.eml`` files are one message; ``.mbox`` files and files that start with a ``From `` line
    are mbox, one item per message (each carries the mbox file's path). Files with another
    short extension (``.tsv``, ``.md``, ``.json`` ...) are ignored; files without one (such as
    Maildir or SpamAssassin names) count as one message when they start with a header block.

    Raises:
        MailLoadError: when a file cannot be read and no ``on_error`` callback is given.
    """
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        try:
            yield from _read_mail_file(file)
        except MailLoadError as error:
            if on_error is None:
                raise
            on_error(file, str(error))


def load_directory(path: Path) -> tuple[list[dict[str, Any]], list[LoadFailure]]:
    """Load every message under ``path``; files that are not readable mail become failures."""
    messages: list[dict[str, Any]] = []
    failures: list[LoadFailure] = []

    def report(file: Path, reason: str) -> None:
        failures.append(LoadFailure(file, reason))
        logger.warning("mail file skipped", extra={"path": str(file), "reason": reason})

    for file, raw in iter_mail_files(path, on_error=report):
        try:
            messages.append(graph_message_from_eml(raw))
        except MailLoadError as error:
            report(file, str(error))
    logger.info("mail loaded", extra={"messages": len(messages), "failures": len(failures)})
    return messages, failures


def _parse(raw: bytes) -> tuple[Message, bool]:
    """Parse the MIME structure, or only the headers when the structure itself breaks the parser."""
    try:
        return _PARSER.parsebytes(raw), True
    except (LookupError, ValueError) as error:
        logger.debug("mime structure unreadable", extra={"error": type(error).__name__})
        return _PARSER.parsebytes(raw, headersonly=True), False


def _read_mail_file(file: Path) -> Iterator[tuple[Path, bytes]]:
    suffix = file.suffix.lower()
    if suffix not in _MBOX_SUFFIXES and suffix != ".eml" and _PLAIN_SUFFIX.fullmatch(suffix):
        return
    try:
        raw = file.read_bytes()
    except OSError as error:
        reason = f"cannot read the file: {error.strerror or error}"
        raise MailLoadError(reason) from error

    if suffix in _MBOX_SUFFIXES or (suffix != ".eml" and raw.startswith(b"From ")):
        yield from ((file, item) for item in _mbox_messages(file))
    elif suffix == ".eml" or _looks_like_message(raw):
        yield file, raw


def _mbox_messages(file: Path) -> list[bytes]:
    try:
        box = mailbox.mbox(file, create=False)
        try:
            return [box.get_bytes(key) for key in box.iterkeys()]
        finally:
            box.close()
    except (OSError, mailbox.Error) as error:
        reason = f"cannot read the file as mbox: {type(error).__name__}"
        raise MailLoadError(reason) from error


def _looks_like_message(raw: bytes) -> bool:
    seen_header = False
    for line in raw.splitlines():
        if not line.strip():
            return seen_header
        if _HEADER_LINE.match(line):
            seen_header = True
        elif not (seen_header and line[:1] in (b" ", b"\t")):
            return False
    return False


def _header_text(value: str) -> str:
    # NOTE: the bytes parser keeps non-ASCII header bytes as surrogate escapes; turn them
    # back into text (UTF-8 per RFC 6532, else Windows-1252) so the JSON stays valid.
    if value.isascii():
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _unfold(value: str) -> str:
    return re.sub(r"[\r\n]", "", value)


def _values(headers: list[tuple[str, str]], name: str) -> list[str]:
    wanted = name.lower()
    return [value for key, value in headers if key.lower() == wanted]


def _first(headers: list[tuple[str, str]], name: str) -> str | None:
    values = _values(headers, name)
    return values[0] if values else None


def _decode_bytes(data: bytes, charset: str | None) -> str:
    for candidate in (charset or "ascii", "utf-8"):
        try:
            return data.decode(candidate)
        except (LookupError, ValueError):
            continue
    return data.decode("cp1252", "replace")


def _decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words leniently; unknown charsets fall back to UTF-8/1252."""
    try:
        chunks = decode_header(value)
    except (HeaderParseError, ValueError):
        return value
    return "".join(
        chunk if isinstance(chunk, str) else _decode_bytes(chunk, charset or "raw-unicode-escape")
        for chunk, charset in chunks
    )


def _recipients(values: list[str]) -> list[dict[str, Any]]:
    recipients = []
    for name, address in getaddresses(values):
        local, at, domain = address.rpartition("@")
        if not (at and local and domain):
            continue
        display = " ".join(_decode_words(name).split()) or address
        recipients.append({"emailAddress": {"name": display, "address": address}})
    return recipients


def _participants(headers: list[tuple[str, str]]) -> dict[str, Any]:
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


def _dates(headers: list[tuple[str, str]]) -> dict[str, str]:
    sent = _parse_date(_first(headers, "Date"))
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


def _conversation_id(headers: list[tuple[str, str]], raw: bytes) -> str:
    """Derive an opaque, stable id from the thread root (References, In-Reply-To, Message-ID)."""
    for name in ("References", "In-Reply-To", "Message-ID"):
        ids = _message_ids(_first(headers, name))
        if ids:
            root = ids[0].encode("utf-8", "replace")
            break
    else:
        # A message with no ids at all is a conversation of its own.
        root = raw
    digest = hashlib.sha256(root).digest()[:25]
    return "AAQk" + base64.b64encode(digest).decode("ascii")


def _importance(headers: list[tuple[str, str]]) -> str:
    words = {"high": "high", "urgent": "high", "low": "low", "non-urgent": "low"}
    for name in ("Importance", "Priority", "X-MSMail-Priority"):
        value = (_first(headers, name) or "").strip().lower()
        if value in words:
            return words[value]
    priority = (_first(headers, "X-Priority") or "").strip()[:1]
    return {"1": "high", "2": "high", "4": "low", "5": "low"}.get(priority, "normal")


def _leaf_parts(part: Message, *, related: bool = False) -> Iterator[tuple[Message, bool]]:
    """Yield every leaf MIME part with whether it sits inside ``multipart/related``."""
    if part.get_content_type() == "message/rfc822" or not part.is_multipart():
        yield part, related
        return
    inner_related = related or part.get_content_type() == "multipart/related"
    for child in part.get_payload():
        if not isinstance(child, str):
            yield from _leaf_parts(child, related=inner_related)


def _is_attachment(part: Message, *, related: bool) -> bool:
    disposition = part.get_content_disposition()
    if disposition == "attachment":
        return True
    if disposition == "inline" or related:
        return False
    if part.get_content_maintype() == "text":
        return part.get_filename() is not None
    return True


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return _decode_bytes(payload, part.get_content_charset())


def _content(message: Message, *, structured: bool) -> dict[str, Any]:
    """Pick the body and find attachments; an unparseable MIME tree is kept as plain text."""
    if not structured:
        payload = message.get_payload()
        text = _header_text(payload) if isinstance(payload, str) else ""
        return _body_fields({"contentType": "text", "content": text}, text, attachments=False)

    bodies: dict[str, Message] = {}
    has_attachments = False
    for part, related in _leaf_parts(message):
        if _is_attachment(part, related=related):
            has_attachments = True
        elif part.get_content_type() in ("text/html", "text/plain"):
            bodies.setdefault(part.get_content_subtype(), part)

    if "html" in bodies:
        content = _part_text(bodies["html"])
        body, preview = {"contentType": "html", "content": content}, _html_text(content)
    else:
        content = _part_text(bodies["plain"]) if "plain" in bodies else ""
        body, preview = {"contentType": "text", "content": content}, content
    return _body_fields(body, preview, attachments=has_attachments)


def _body_fields(body: dict[str, str], text: str, *, attachments: bool) -> dict[str, Any]:
    preview = " ".join(text.split())[:PREVIEW_LENGTH]
    return {"body": body, "bodyPreview": preview, "hasAttachments": attachments}


class _TextExtractor(HTMLParser):
    """Collect the visible text of an HTML document."""

    _HIDDEN = frozenset({"head", "script", "style", "title"})
    _BLOCKS = frozenset({"br", "div", "p", "li", "tr", "td", "th", "hr", "table", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Enter a hidden element, or separate block text with a space."""
        if tag in self._HIDDEN:
            self._hidden_depth += 1
        self._separate(tag)

    def handle_endtag(self, tag: str) -> None:
        """Leave a hidden element."""
        if tag in self._HIDDEN and self._hidden_depth:
            self._hidden_depth -= 1
        self._separate(tag)

    def _separate(self, tag: str) -> None:
        if tag in self._BLOCKS or re.fullmatch(r"h[1-6]", tag):
            self.chunks.append(" ")

    def handle_data(self, data: str) -> None:
        """Keep text outside hidden elements."""
        if not self._hidden_depth:
            self.chunks.append(data)


def _html_text(html: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    return "".join(extractor.chunks)
