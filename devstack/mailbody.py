"""Pick the body of raw mail and tell whether it has attachments, as Graph's ``message`` does.

:func:`message_content` gives a parsed message's ``body``, ``bodyPreview`` (the body's visible
text with its white space collapsed, at most :data:`PREVIEW_LENGTH` characters) and
``hasAttachments``. When the MIME structure broke the parser, what follows the headers is kept
as a plain-text body and no attachment is reported.

Known limitations:
    The body is the first HTML part that is not an attachment, else the first plain-text part;
    Outlook would join several inline text parts of a ``multipart/mixed`` message, this does
    not. HTML is passed through as received: Graph strips unsafe HTML, this does not. Inline
    parts (``Content-Disposition: inline`` or inside ``multipart/related``) never count as
    attachments, even where Exchange might list them.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

from devstack.mailheaders import decode_bytes, header_text

if TYPE_CHECKING:
    from collections.abc import Iterator
    from email.message import Message

PREVIEW_LENGTH = 255


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
    return decode_bytes(payload, part.get_content_charset())


def message_content(message: Message, *, structured: bool) -> dict[str, Any]:
    """Pick the body and find attachments; an unparseable MIME tree is kept as plain text."""
    if not structured:
        payload = message.get_payload()
        text = header_text(payload) if isinstance(payload, str) else ""
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
