"""Message delta query for one mail folder: rounds, pages and the state tokens that chain them.

A state token is base64url JSON naming the mailbox, the folder, the first request's ``$select``
and ``$filter``, the change-sequence window of the round and how far the round has been read.
Clients must treat it as opaque, as they must with Graph's.

Known limitations: the ``changeType`` custom filter, ``$orderby`` and ``$expand`` are ignored, and
``$top`` is ignored as real message delta has been observed to do.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from devstack.simulator.graphhttp import (
    graph_error,
    page_size,
    select_fields,
    wants_immutable_ids,
)
from devstack.simulator.mailbox import StoredMessage, Tombstone
from devstack.simulator.messages import render_message, render_removed
from devstack.simulator.web import json_response

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from devstack.simulator.mailbox import Folder, Mailbox
    from devstack.simulator.web import Call

_FILTER = re.compile(r"^\s*receivedDateTime\s+(ge|gt)\s+(\S+)\s*$", re.IGNORECASE)


class BadTokenError(Exception):
    """Raised when a skip or delta token cannot be read or belongs to another mailbox or folder."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a delta round stands: items with ``after < seq <= upto`` are still to come."""

    owner: str
    folder: str
    generation: int
    after: int
    upto: int
    initial: bool
    select: list[str] | None = None
    filter_op: str | None = None
    filter_value: str | None = None

    def encode(self) -> str:
        """Return the cursor as an opaque token."""
        raw = json.dumps(asdict(self), separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Read a token made by ``encode``."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            return cls(**json.loads(raw))
        except (binascii.Error, ValueError, TypeError) as exc:
            raise BadTokenError(token[:12]) from exc


def _first_cursor(call: Call, owner: str, folder: Folder, mailbox: Mailbox) -> Cursor:
    args = call.request.args
    select = select_fields(args.get("$select"))
    op = value = None
    if args.get("$filter"):
        match = _FILTER.match(args["$filter"])
        if match is None:
            raise ValueError(args["$filter"])
        op, value = match.group(1).lower(), match.group(2).strip("'")
        datetime.fromisoformat(value)
    return Cursor(
        owner,
        folder.id,
        mailbox.generation,
        0,
        mailbox.high_water,
        initial=True,
        select=sorted(select) if select is not None else None,
        filter_op=op,
        filter_value=value,
    )


def _cursor(call: Call, owner: str, folder: Folder, mailbox: Mailbox) -> Cursor:
    args = call.request.args
    if args.get("$skiptoken"):
        cursor = Cursor.decode(args["$skiptoken"])
    elif args.get("$deltatoken"):
        previous = Cursor.decode(args["$deltatoken"])
        cursor = replace(previous, after=previous.upto, upto=mailbox.high_water, initial=False)
    else:
        return _first_cursor(call, owner, folder, mailbox)
    if cursor.owner != owner or cursor.folder != folder.id:
        message = "token of another mailbox or folder"
        raise BadTokenError(message)
    return cursor


def _passes(cursor: Cursor, item: StoredMessage | Tombstone) -> bool:
    if isinstance(item, Tombstone):
        return not cursor.initial
    if cursor.filter_op is None or cursor.filter_value is None:
        return True
    received = datetime.fromisoformat(str(item.data.get("receivedDateTime") or item.created))
    bound = datetime.fromisoformat(cursor.filter_value)
    return received >= bound if cursor.filter_op == "ge" else received > bound


def _render(call: Call, cursor: Cursor, item: StoredMessage | Tombstone) -> dict[str, Any]:
    immutable = wants_immutable_ids(call)
    if isinstance(item, Tombstone):
        return render_removed(item, immutable=immutable)
    select = frozenset(cursor.select) if cursor.select is not None else None
    return render_message(item, immutable=immutable, select=select)


def _repeated(item: dict[str, Any]) -> list[dict[str, Any]]:
    """Return a live item twice, as a delta page that lists one message twice does."""
    return [item] if "@removed" in item else [item, dict(item)]


def delta_page(call: Call, owner: str, folder: Folder, mailbox: Mailbox) -> Response:
    """Answer one ``GET .../mailFolders/{id}/messages/delta`` request; the caller holds the lock."""
    try:
        cursor = _cursor(call, owner, folder, mailbox)
    except ValueError:
        return graph_error(call, 400, "ErrorInvalidUrlQueryFilter", "The filter is not supported.")
    except BadTokenError:
        return graph_error(call, 400, "ErrorInvalidUrl", "The delta or skip token is invalid.")
    if cursor.generation != mailbox.generation:
        message = "The sync state generation is not found. Synchronize again."
        return graph_error(call, 410, "syncStateNotFound", message)

    size = page_size(call)
    pending = mailbox.changes(folder.id, cursor.after, cursor.upto)
    chunk = pending[:size]
    page = [_render(call, cursor, item) for item in chunk if _passes(cursor, item)]
    if mailbox.repeat_in_delta:
        page = [copy for item in page for copy in _repeated(item)]
    base = f"{call.state.urls.graph_url}/me/mailFolders/{quote(folder.id, safe='')}/messages/delta"
    body: dict[str, Any] = {
        "@odata.context": f"{call.state.urls.graph_url}/$metadata#Collection(message)"
    }
    if len(pending) > size:
        body["@odata.nextLink"] = (
            f"{base}?$skiptoken={replace(cursor, after=chunk[-1].seq).encode()}"
        )
    else:
        done = replace(cursor, after=cursor.upto, initial=False)
        body["@odata.deltaLink"] = f"{base}?$deltatoken={done.encode()}"
    body["value"] = page
    headers = {"Preference-Applied": f"odata.maxpagesize={size}"}
    return json_response(body, headers=headers)
