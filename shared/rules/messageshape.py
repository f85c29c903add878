"""Check that a posted message has the shape of a Graph message before anything reads it.

Sync reads messages from Graph, whose shape is fixed; the admin dry run reads whatever a caller
posts. Every field the decision reads is checked here for its JSON type, so a posted message
either has Graph's shape or is refused with 400 naming the field; fields the decision does not
read are left alone, as Graph sends many.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping

TEXT_FIELDS = (
    "id",
    "subject",
    "bodyPreview",
    "internetMessageId",
    "conversationId",
    "parentFolderId",
    "receivedDateTime",
    "sentDateTime",
)
FLAG_FIELDS = ("isDraft", "hasAttachments")
ONE_ADDRESS = ("from", "sender")
ADDRESS_LISTS = ("toRecipients", "ccRecipients", "bccRecipients", "replyTo")
MAX_LIST = 5_000


def check_graph_message(message: Mapping[str, Any], path: str = "message") -> None:
    """Refuse a message whose fields do not have the JSON types Graph gives them.

    Raises:
        ValidationError: naming the first field of another type, as in
            ``message.toRecipients[2].emailAddress.address``.
    """
    for name in TEXT_FIELDS:
        _text(message.get(name), f"{path}.{name}")
    for name in FLAG_FIELDS:
        _flag(message.get(name), f"{path}.{name}")
    for name in ONE_ADDRESS:
        if message.get(name) is not None:
            _recipient(message[name], f"{path}.{name}")
    for name in ADDRESS_LISTS:
        for index, item in enumerate(_items(message.get(name), f"{path}.{name}")):
            _recipient(item, f"{path}.{name}[{index}]")
    _body(message.get("body"), f"{path}.body")
    headers = _items(message.get("internetMessageHeaders"), f"{path}.internetMessageHeaders")
    for index, header in enumerate(headers):
        _header(header, f"{path}.internetMessageHeaders[{index}]")


def _body(value: Any, path: str) -> None:
    if value is None:
        return
    _object(value, path)
    _text(value.get("contentType"), f"{path}.contentType")
    _text(value.get("content"), f"{path}.content")


def _header(value: Any, path: str) -> None:
    _object(value, path)
    for key in ("name", "value"):
        if not isinstance(value.get(key), str):
            field = f"{path}.{key}"
            raise ValidationError(field, "must be a string")


def _flag(value: Any, path: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise ValidationError(path, "must be true, false or null")


def _recipient(value: Any, path: str) -> None:
    _object(value, path)
    address = value.get("emailAddress")
    if address is None:
        return
    _object(address, f"{path}.emailAddress")
    _text(address.get("name"), f"{path}.emailAddress.name")
    _text(address.get("address"), f"{path}.emailAddress.address")


def _items(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError(path, "must be a list or null")
    if len(value) > MAX_LIST:
        raise ValidationError(path, f"holds at most {MAX_LIST} entries")
    return value


def _object(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise ValidationError(path, "must be a JSON object")


def _text(value: Any, path: str) -> None:
    if value is not None and not isinstance(value, str):
        raise ValidationError(path, "must be a string or null")
