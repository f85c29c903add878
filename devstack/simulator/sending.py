"""Microsoft Graph v1.0 draft and send endpoints, attachments and upload sessions.

``POST /me/messages`` creates a draft in Drafts with a stable ``internetMessageId``
(``POST /me/messages/{id}/createReply`` one in the original's thread);
``POST /me/messages/{id}/attachments`` adds a file attachment inline (under 3 MB);
``POST /me/messages/{id}/attachments/createUploadSession`` opens an upload session for a file of
3 MB or more (a smaller one is refused with ``ErrorAttachmentSizeShouldNotBeLessThanMinimumSize``,
microsoft-graph-docs#9589), whose pre-authenticated ``uploadUrl`` takes ``PUT`` byte ranges in
order; ``POST /me/messages/{id}/send`` moves the draft to Sent Items (the immutable id and the
``internetMessageId`` stay); ``DELETE /me/messages/{id}`` deletes it; ``GET /me/mailboxSettings``
gives the mailbox's time zone. A request body over 4 MB is refused as Graph does (BR-09); that
check lives in :func:`too_large` and runs before authentication for every Graph route.

Known limitations: a sent message is not delivered to any recipient's simulated mailbox;
``DELETE`` removes a message for good instead of moving it to Deleted Items; upload sessions
never expire; ``PATCH`` of a draft, ``createReplyAll``, ``forward`` and ``sendMail`` are not
served; a reply draft's body replaces the quoted original instead of preceding it.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Response

from devstack.simulator import ids, tokens
from devstack.simulator.graphhttp import graph_error, wants_immutable_ids
from devstack.simulator.messages import render_message
from devstack.simulator.web import Service, json_body, json_response

if TYPE_CHECKING:
    from collections.abc import Iterable

    from devstack.simulator.directory import SimUser
    from devstack.simulator.mailbox import Mailbox, StoredMessage
    from devstack.simulator.state import SimState
    from devstack.simulator.web import Call

MB = 1024 * 1024
MAX_REQUEST_BYTES = 4 * MB
"""Graph refuses request bodies larger than this (microsoft-graph-docs#85)."""
MIN_UPLOAD_SESSION_BYTES = 3 * MB
"""Upload sessions refuse smaller files; inline attachments must be smaller than this."""
MAX_ATTACHMENT_BYTES = 150 * MB
UPLOAD_PREFIX = "/upload/"
WRITE_SCOPES = frozenset({"Mail.ReadWrite"})
SEND_SCOPES = frozenset({"Mail.Send"})
SETTINGS_SCOPES = frozenset({"MailboxSettings.Read", "MailboxSettings.ReadWrite"})
TOO_LARGE = "The maximum request length supported is 4MB."
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@dataclass(slots=True)
class UploadSession:
    """An open upload session: where the bytes go and how many have arrived."""

    owner: str
    message_id: str
    name: str
    content_type: str
    size: int
    received: bytearray = field(default_factory=bytearray)


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


def _refused(call: Call, wanted: frozenset[str]) -> Response | None:
    granted = set(str((call.claims or {}).get("scp", "")).split())
    if granted & wanted:
        return None
    return graph_error(call, 403, "ErrorAccessDenied", "Access is denied. Check credentials.")


def _user(call: Call) -> SimUser:
    if call.user is None:
        message = "authenticate() sets the user before any handler runs"
        raise LookupError(message)
    return call.user


def _not_found(call: Call) -> Response:
    message = "The specified object was not found in the store."
    return graph_error(call, 404, "ErrorItemNotFound", message)


def _draft(call: Call, mailbox: Mailbox) -> StoredMessage | Response:
    found = mailbox.find_message(call.args["message_id"])
    if found is None:
        return _not_found(call)
    if not found.data.get("isDraft"):
        message = "The item is not a draft; only drafts can be changed or sent."
        return graph_error(call, 400, "ErrorInvalidOperation", message)
    return found


def _message_json(call: Call, message: StoredMessage, status: int) -> Response:
    body = render_message(message, immutable=wants_immutable_ids(call))
    return json_response(body, status)


def create_draft(call: Call) -> Response:
    """Serve ``POST /me/messages``: a new draft in Drafts, answered 201 with its JSON."""
    refused = _refused(call, WRITE_SCOPES)
    if refused is not None:
        return refused
    user = _user(call)
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
    refused = _refused(call, WRITE_SCOPES)
    if refused is not None:
        return refused
    user = _user(call)
    given = json_body(call).get("message")
    given = given if isinstance(given, dict) else {}
    with call.state.lock:
        mailbox = call.state.mailboxes[user.oid]
        original = mailbox.find_message(call.args["message_id"])
        if original is None:
            return _not_found(call)
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


def _decoded(call: Call, text: Any) -> bytes | Response:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        message = "The attachment's contentBytes are not valid base64."
        return graph_error(call, 400, "ErrorInvalidRequest", message)


def add_attachment(call: Call) -> Response:
    """Serve ``POST /me/messages/{id}/attachments`` for a file attachment under 3 MB."""
    refused = _refused(call, WRITE_SCOPES)
    if refused is not None:
        return refused
    body = json_body(call)
    content = _decoded(call, body.get("contentBytes", ""))
    if isinstance(content, Response):
        return content
    if len(content) >= MIN_UPLOAD_SESSION_BYTES:
        message = "Attachments of 3 MB or more must be uploaded through an upload session."
        return graph_error(call, 413, "ErrorAttachmentSizeTooLarge", message)
    with call.state.lock:
        mailbox = call.state.mailboxes[_user(call).oid]
        draft = _draft(call, mailbox)
        if isinstance(draft, Response):
            return draft
        name, kind = str(body.get("name", "")), str(body.get("contentType", ""))
        attachment = _attach(call.state, mailbox, draft, (name, kind, bytes(content)))
    return json_response(_attachment_json(attachment, with_bytes=True), 201)


def _attach(
    state: SimState, mailbox: Mailbox, draft: StoredMessage, file: tuple[str, str, bytes]
) -> dict[str, Any]:
    name, kind, content = file
    attachment = {
        "id": ids.change_key(),
        "name": name,
        "contentType": kind or "application/octet-stream",
        "size": len(content),
        "content": content,
    }
    state.sending.attachments.setdefault(draft.immutable_id, []).append(attachment)
    mailbox.update_message(draft.immutable_id, {"hasAttachments": True}, state.clock.iso())
    return attachment


def _attachment_json(attachment: dict[str, Any], *, with_bytes: bool) -> dict[str, Any]:
    shown = {k: v for k, v in attachment.items() if k != "content"}
    if with_bytes:
        shown["contentBytes"] = base64.b64encode(attachment["content"]).decode("ascii")
    return {"@odata.type": "#microsoft.graph.fileAttachment", **shown}


def create_upload_session(call: Call) -> Response:
    """Serve ``POST /me/messages/{id}/attachments/createUploadSession`` (3 MB to 150 MB)."""
    refused = _refused(call, WRITE_SCOPES)
    if refused is not None:
        return refused
    item = json_body(call).get("AttachmentItem")
    size = item.get("size") if isinstance(item, dict) else None
    if not isinstance(item, dict) or not isinstance(size, int) or size > MAX_ATTACHMENT_BYTES:
        message = "AttachmentItem needs a name and a size of at most 150 MB."
        return graph_error(call, 400, "ErrorInvalidRequest", message)
    if size < MIN_UPLOAD_SESSION_BYTES:
        message = "Attachment size should not be less than the minimum size of 3 MB."
        return graph_error(call, 400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize", message)
    user = _user(call)
    with call.state.lock:
        draft = _draft(call, call.state.mailboxes[user.oid])
        if isinstance(draft, Response):
            return draft
        session_id = ids.opaque_token(24)
        call.state.sending.sessions[session_id] = UploadSession(
            user.oid,
            draft.immutable_id,
            str(item.get("name", "")),
            str(item.get("contentType", "")),
            size,
        )
        expires = call.state.clock.iso()
    upload_url = f"{call.state.urls.base_url}{UPLOAD_PREFIX}{quote(session_id, safe='')}"
    body = {"uploadUrl": upload_url, "expirationDateTime": expires, "nextExpectedRanges": ["0-"]}
    return json_response(body, 201)


def upload_range(call: Call) -> Response:
    """Serve a ``PUT`` of one byte range to an upload session's URL (no Authorization)."""
    refused = too_large(call)
    if refused is not None:
        return refused
    if call.request.headers.get("Authorization"):
        message = "The upload URL is pre-authenticated; send no Authorization header."
        return graph_error(call, 401, "InvalidAuthenticationToken", message)
    matched = _RANGE.fullmatch(call.request.headers.get("Content-Range", ""))
    chunk = call.request.get_data()
    with call.state.lock:
        session = call.state.sending.sessions.get(call.args["session_id"])
        if session is None:
            return _not_found(call)
        problem = _range_problem(session, matched, len(chunk))
        if problem is not None:
            return graph_error(call, 416, "InvalidRange", problem)
        session.received.extend(chunk)
        if len(session.received) < session.size:
            expected = [f"{len(session.received)}-"]
            return json_response({"nextExpectedRanges": expected}, 200)
        return _finish_upload(call, session)


def _range_problem(
    session: UploadSession, matched: re.Match[str] | None, length: int
) -> str | None:
    if matched is None:
        return "Content-Range must be 'bytes start-end/total'."
    start, end, total = (int(part) for part in matched.groups())
    if total != session.size:
        return "The total in Content-Range differs from the session's size."
    if start != len(session.received):
        return f"The next expected range starts at {len(session.received)}."
    if end < start or end >= total or end - start + 1 != length:
        return "The range does not match the body's length."
    return None


def _finish_upload(call: Call, session: UploadSession) -> Response:
    del call.state.sending.sessions[call.args["session_id"]]
    mailbox = call.state.mailboxes[session.owner]
    draft = mailbox.find_message(session.message_id)
    if draft is None:
        return _not_found(call)
    content = bytes(session.received)
    attachment = _attach(call.state, mailbox, draft, (session.name, session.content_type, content))
    location = (
        f"{call.state.urls.graph_url}/users('{session.owner}')/messages"
        f"('{quote(session.message_id, safe='')}')/attachments('{attachment['id']}')"
    )
    return Response(status=201, headers={"Location": location})


def send_draft(call: Call) -> Response:
    """Serve ``POST /me/messages/{id}/send``: the draft moves to Sent Items; 202, no body."""
    refused = _refused(call, SEND_SCOPES)
    if refused is not None:
        return refused
    with call.state.lock:
        mailbox = call.state.mailboxes[_user(call).oid]
        draft = _draft(call, mailbox)
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
    refused = _refused(call, WRITE_SCOPES)
    if refused is not None:
        return refused
    with call.state.lock:
        mailbox = call.state.mailboxes[_user(call).oid]
        found = mailbox.find_message(call.args["message_id"])
        if found is None:
            return _not_found(call)
        mailbox.delete_message(found.immutable_id)
        call.state.sending.attachments.pop(found.immutable_id, None)
    return Response(status=204)


def list_attachments(call: Call) -> Response:
    """Serve ``GET /me/messages/{id}/attachments`` (without their bytes)."""
    with call.state.lock:
        mailbox = call.state.mailboxes[_user(call).oid]
        found = mailbox.find_message(call.args["message_id"])
        if found is None:
            return _not_found(call)
        stored = call.state.sending.attachments.get(found.immutable_id, [])
        value = [_attachment_json(a, with_bytes=False) for a in stored]
    return json_response({"value": value})


def mailbox_settings(call: Call) -> Response:
    """Serve ``GET /me/mailboxSettings`` with the mailbox's time zone."""
    refused = _refused(call, SETTINGS_SCOPES)
    if refused is not None:
        return refused
    user = _user(call)
    with call.state.lock:
        zone = call.state.sending.time_zones.get(user.oid, user.time_zone)
    return json_response({"timeZone": zone, "dateFormat": "yyyy-MM-dd", "timeFormat": "HH:mm"})


ROUTES: list[tuple[str, str, str, Any]] = [
    ("/messages", "create_draft", "POST", create_draft),
    (
        "/messages/<path:message_id>/attachments/createUploadSession",
        "upload_session",
        "POST",
        create_upload_session,
    ),
    ("/messages/<path:message_id>/attachments", "add_attachment", "POST", add_attachment),
    ("/messages/<path:message_id>/attachments", "list_attachments", "GET", list_attachments),
    ("/messages/<path:message_id>/send", "send_draft", "POST", send_draft),
    ("/messages/<path:message_id>/createReply", "create_reply", "POST", create_reply),
    ("/messages/<path:message_id>", "delete_message", "DELETE", delete_message),
    ("/mailboxSettings", "mailbox_settings", "GET", mailbox_settings),
]
"""(suffix, endpoint, method, handler) of each sending route under ``/me`` and ``/users/{id}``."""


def upload_service() -> Service:
    """Return the pre-authenticated upload URLs of upload sessions, under ``/upload``."""
    rule = Rule(f"{UPLOAD_PREFIX}<session_id>", endpoint="upload_range", methods=["PUT"])
    return Service(
        name="upload",
        url_map=Map([rule], strict_slashes=False),
        handlers={"upload_range": upload_range},
        prepare=lambda call: None,
        error=graph_error,
    )


def attachments(state: SimState, upn: str, message_id: str) -> list[dict[str, Any]]:
    """Return a message's attachments with their bytes (``content``), for tests."""
    with state.lock:
        _, mailbox = state.mailbox(upn)
        found = mailbox.get_message(message_id)
        return copy.deepcopy(state.sending.attachments.get(found.immutable_id, []))


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
