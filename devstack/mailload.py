"""Turn raw RFC 5322 mail into the message JSON that Microsoft Graph returns.

The Microsoft 365 simulator serves mailboxes filled from real mail files and from ``mailgen``;
this module does the translation, so both sources read like Graph's ``message`` resource
(without ``id`` and ``parentFolderId``, which the simulator assigns). The header fields are read
by :mod:`devstack.mailheaders` (addresses, dates, ``conversationId``, importance), the body and
attachments by :mod:`devstack.mailbody`. :func:`iter_mail_files` finds the messages in a mail
file or under a directory (``.eml``, mbox and Maildir-style files).

Known limitations:
    ``conversationIndex``, ``uniqueBody`` and categories are not produced.
"""

from __future__ import annotations

import logging
import mailbox
import re
from email.parser import BytesParser
from email.policy import Compat32
from typing import TYPE_CHECKING, Any, NamedTuple

from devstack.mailbody import message_content
from devstack.mailheaders import (
    conversation_id,
    dates,
    decode_words,
    first_header,
    header_text,
    importance,
    participants,
    unfold,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from email.message import Message
    from pathlib import Path

logger = logging.getLogger(__name__)

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
    headers = [(name, unfold(header_text(value))) for name, value in message.items()]
    if not headers:
        reason = "no header fields found; the input is not an RFC 5322 message"
        raise MailLoadError(reason)

    graph: dict[str, Any] = {}
    message_id = (first_header(headers, "Message-ID") or "").strip()
    if message_id:
        graph["internetMessageId"] = message_id
    graph["conversationId"] = conversation_id(headers, raw)
    graph["subject"] = decode_words(first_header(headers, "Subject") or "")
    graph.update(participants(headers))
    graph.update(dates(headers))
    graph.update(message_content(message, structured=structured))
    graph["importance"] = importance(headers)
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
