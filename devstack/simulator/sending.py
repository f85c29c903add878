"""Microsoft Graph v1.0 drafts and sending, and the 4 MB request limit.

``POST /me/messages`` creates a draft in Drafts with a stable ``internetMessageId``
(``POST /me/messages/{id}/createReply`` one in the original's thread); attachments are in
:mod:`devstack.simulator.attachments`; ``POST /me/messages/{id}/send`` moves the draft to Sent
Items (the immutable id and the ``internetMessageId`` stay); ``DELETE /me/messages/{id}``
deletes it; ``GET /me/mailboxSettings`` gives the mailbox's time zone. A request body over 4 MB
is refused as Graph does (BR-09); that check lives in :func:`too_large` and runs before
authentication for every Graph route.

Known limitations: a sent message is not delivered to any recipient's simulated mailbox;
``DELETE`` removes a message for good instead of moving it to Deleted Items; ``PATCH`` of a
draft, ``createReplyAll``, ``forward`` and ``sendMail`` are not served; a reply draft's body
replaces the quoted original instead of preceding it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from devstack.simulator import tokens
from devstack.simulator.graphhttp import graph_error, wants_immutable_ids
from devstack.simulator.messages import render_message
from devstack.simulator.web import json_body, json_response

if TYPE_CHECKING:
    from collections.abc import Iterable

    from devstack.simulator.attachments import UploadSession
    from devstack.simulator.directory import SimUser
    from devstack.simulator.mailbox import Mailbox, StoredMessage
    from devstack.simulator.state import SimState
    from devstack.simulator.web import Call

MB = 1024 * 1024
MAX_REQUEST_BYTES = 4 * MB
"""Graph refuses request bodies larger than this (microsoft-graph-docs#85)."""
WRITE_SCOPES = frozenset({"Mail.ReadWrite"})
SEND_SCOPES = frozenset({"Mail.Send"})
SETTINGS_SCOPES = frozenset({"MailboxSettings.Read", "MailboxSettings.ReadWrite"})
TOO_LARGE = "The maximum request length supported is 4MB."


@dataclass(slots=True)
class SendBook:
    """Attachments of messages, open upload sessions and mailbox time zones."""

    attachments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sessions: dict[str, UploadSession] = field(default_factory=dict)
    time_zones: dict[str, str] = field(default_factory=dict)


def too_large(call: Call) -> Response | None:
    """Return Graph's 413 when the request body is over 4 MB, else None."""
    length = call.request.content_length
    if length is None:
        length = len(call.request.get_data(cache=True))
    if length > MAX_REQUEST_BYTES:
        return graph_error(call, 413, "RequestEntityTooLarge", TOO_LARGE)
    return None


def refused(call: Call, wanted: frozenset[str]) -> Response | None:
    """Return a 403 unless the token grants one of the ``wanted`` scopes."""
    granted = set(str((call.claims or {}).get("scp", "")).split())
    if granted & wanted:
        return None
    return graph_error(call, 403, "ErrorAccessDenied", "Access is denied. Check credentials.")


def owner(call: Call) -> SimUser:
    """Return the user the request acts for (``authenticate`` has set it)."""
    if call.user is None:
        message = "authenticate() sets the user before any handler runs"
        raise LookupError(message)
    return call.user


def not_found(call: Call) -> Response:
    """Return Graph's 404 for an item that does not exist."""
    message = "The specified object was not found in the store."
    return graph_error(call, 404, "ErrorItemNotFound", message)


def draft_of(call: Call, mailbox: Mailbox) -> StoredMessage | Response:
    """Return the draft the route names, or Graph's 404 (unknown) or 400 (sent already)."""
    found = mailbox.find_message(call.args["message_id"])
    if found is None:
        return not_found(call)
    if not found.data.get("isDraft"):
        message = "The item is not a draft; only drafts can be changed or sent."
        return graph_error(call, 400, "ErrorInvalidOperation", message)
    return found


def _message_json(call: Call, message: StoredMessage, status: int) -> Response:
    body = render_message(message, immutable=wants_immutable_ids(call))
    return json_response(body, status)


def create_draft(call: Call) -> Response:
    """Serve ``POST /me/messages``: a new draft in Drafts, answered 201 with its JSON."""
    stopped = refused(call, WRITE_SCOPES)
    if stopped is not None:
        return stopped
    user = owner(call)
    data = {k: v for k, v in json_body(call).items() if k not in ("attachments", "isDraft")}
    with call.state.lock:
        mailbox = call.state.mailboxes[user.oid]
        message = mailbox.add_message("drafts", _as_draft(user, data), call.state.clock.iso())
        return _message_json(call, message, 201)


def create_reply(call: Call) -> Response:
    """Serve ``POST /me/messages/{id}/createReply``: a reply draft in the original's thread.

    The body's ``message`` properties are applied to the draft; the draft keeps the original's
    ``conversationId`` and carries ``In-Reply-To`` and ``References`` headers naming it.
    """
    stopped = refused(call, WRITE_SCOPES)
    if stopped is not None:
        return stopped
    user = owner(call)
    given = json_body(call).get("message")
    given = given if isinstance(given, dict) else {}
    with call.state.lock:
        mailbox = call.state.mailboxes[user.oid]
        original = mailbox.find_message(call.args["message_id"])
        if original is None:
            return not_found(call)
        shown = render_message(original, immutable=True)
        parent = str(shown["internetMessageId"])
        threading = [
            {"name": "In-Reply-To", "value": parent},
            {"name": "References", "value": parent},
        ]
        data = {
            "subject": f"RE: {shown.get('subject', '')}",
            "toRecipients": [shown["from"]] if shown.get("from") else [],
            "conversationId": shown["conversationId"],
            **{k: v for k, v in given.items() if k not in ("attachments", "isDraft")},
        }
        data["internetMessageHeaders"] = [*threading, *(given.get("internetMessageHeaders") or [])]
        message = mailbox.add_message("drafts", _as_draft(user, data), call.state.clock.iso())
        return _message_json(call, message, 201)


def _as_draft(user: SimUser, data: dict[str, Any]) -> dict[str, Any]:
    sender = {"emailAddress": {"name": user.display_name, "address": user.upn}}
    domain = user.upn.rpartition("@")[2] or "simulator.invalid"
    return {
        **data,
        "isDraft": True,
        "hasAttachments": False,
        "internetMessageId": f"<{uuid.uuid4().hex}@{domain}>",
        "from": sender,
        "sender": sender,
    }


def send_draft(call: Call) -> Response:
    """Serve ``POST /me/messages/{id}/send``: the draft moves to Sent Items; 202, no body."""
    stopped = refused(call, SEND_SCOPES)
    if stopped is not None:
        return stopped
    with call.state.lock:
        mailbox = call.state.mailboxes[owner(call).oid]
        draft = draft_of(call, mailbox)
        if isinstance(draft, Response):
            return draft
        now = call.state.clock.iso()
        mailbox.update_message(
            draft.immutable_id,
            {"isDraft": False, "sentDateTime": now, "receivedDateTime": now, "isRead": True},
            now,
        )
        mailbox.move_message(draft.immutable_id, "sentitems", now)
    return Response(status=202)


def delete_message(call: Call) -> Response:
    """Serve ``DELETE /me/messages/{id}``; 204."""
    stopped = refused(call, WRITE_SCOPES)
    if stopped is not None:
        return stopped
    with call.state.lock:
        mailbox = call.state.mailboxes[owner(call).oid]
        found = mailbox.find_message(call.args["message_id"])
        if found is None:
            return not_found(call)
        mailbox.delete_message(found.immutable_id)
        call.state.sending.attachments.pop(found.immutable_id, None)
    return Response(status=204)


def mailbox_settings(call: Call) -> Response:
    """Serve ``GET /me/mailboxSettings`` with the mailbox's time zone."""
    stopped = refused(call, SETTINGS_SCOPES)
    if stopped is not None:
        return stopped
    user = owner(call)
    with call.state.lock:
        zone = call.state.sending.time_zones.get(user.oid, user.time_zone)
    return json_response({"timeZone": zone, "dateFormat": "yyyy-MM-dd", "timeFormat": "HH:mm"})


ROUTES: list[tuple[str, str, str, Any]] = [
    ("/messages", "create_draft", "POST", create_draft),
    ("/messages/<path:message_id>/send", "send_draft", "POST", send_draft),
    ("/messages/<path:message_id>/createReply", "create_reply", "POST", create_reply),
    ("/messages/<path:message_id>", "delete_message", "DELETE", delete_message),
    ("/mailboxSettings", "mailbox_settings", "GET", mailbox_settings),
]
"""(suffix, endpoint, method, handler) of each sending route under ``/me`` and ``/users/{id}``."""


def internet_headers(state: SimState, upn: str, message_id: str) -> dict[str, str]:
    """Return a message's ``internetMessageHeaders`` by name, for tests."""
    with state.lock:
        _, mailbox = state.mailbox(upn)
        headers = mailbox.get_message(message_id).data.get("internetMessageHeaders") or []
        return {str(h.get("name")): str(h.get("value")) for h in headers}


def set_time_zone(state: SimState, upn: str, zone: str) -> None:
    """Set the time zone ``GET /me/mailboxSettings`` answers for a mailbox."""
    with state.lock:
        user, _ = state.mailbox(upn)
        state.sending.time_zones[user.oid] = zone


def issue_graph_token(state: SimState, upn: str, scopes: Iterable[str], client_id: str) -> str:
    """Return a delegated Graph access token for a user, as the token endpoint would issue it."""
    with state.lock:
        user, _ = state.mailbox(upn)
    claims = tokens.user_access_claims(
        issuer=state.issuer(user.tenant_id),
        user=user,
        client_id=client_id,
        scopes=list(scopes),
        now=state.clock.now(),
        expires_in=3600,
    )
    return state.key.sign(claims)
