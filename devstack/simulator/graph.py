"""Microsoft Graph v1.0 mail endpoints for the signed-in user, and the calendar ones mounted.

Each route exists as ``/me/...`` and as ``/users/{id or upn}/...``; the latter only for the token's
own user, as a delegated token allows.

Drafts and send are served by :mod:`devstack.simulator.sending`, attachments and upload
sessions by :mod:`devstack.simulator.attachments`.

Known limitations: no PATCH or move over HTTP (change mailboxes with the Python API or
``/_sim``), ``/me`` is served without checking for ``User.Read``, the ``mailFolders('inbox')``
key syntax is not understood, and ``$filter``/``$orderby`` are ignored outside delta.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from werkzeug.routing import Map, Rule

from devstack.simulator import attachments, calendarview, delta, sending
from devstack.simulator.graphhttp import (
    authenticate,
    graph_error,
    require_mail_scope,
    select_fields,
    wants_immutable_ids,
)
from devstack.simulator.mailbox import Folder
from devstack.simulator.messages import render_folder, render_message
from devstack.simulator.web import Handler, Service, json_response

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from devstack.simulator.directory import SimUser
    from devstack.simulator.mailbox import Mailbox
    from devstack.simulator.web import Call

PREFIX = "/graph/v1.0"
DEFAULT_FOLDER_PAGE = 10


def _mailbox(call: Call) -> tuple[SimUser, Mailbox]:
    user = call.user
    if user is None:
        message = "authenticate() sets the user before any handler runs"
        raise LookupError(message)
    return user, call.state.mailboxes[user.oid]


def _folder(call: Call, mailbox: Mailbox) -> Folder | Response:
    folder = mailbox.graph_folder(call.args["folder"])
    if folder is None:
        return graph_error(call, 404, "ErrorItemNotFound", "The specified folder was not found.")
    return folder


def me(call: Call) -> Response:
    """Serve ``GET /me``."""
    user, _ = _mailbox(call)
    return json_response(
        {
            "@odata.context": f"{call.state.urls.graph_url}/$metadata#users/$entity",
            "id": user.oid,
            "displayName": user.display_name,
            "userPrincipalName": user.upn,
            "mail": user.upn,
            "businessPhones": [],
            "preferredLanguage": "en-US",
        }
    )


def _folder_json(mailbox: Mailbox, folder: Folder) -> dict[str, Any]:
    total, unread = mailbox.counts(folder.id)
    children = len(mailbox.child_folders(folder.id))
    return render_folder(folder, children=children, total=total, unread=unread)


def _folder_page(call: Call, mailbox: Mailbox, parent: Folder) -> Response:
    args = call.request.args
    top = int(args["$top"]) if args.get("$top", "").isdigit() else DEFAULT_FOLDER_PAGE
    skip = int(args["$skip"]) if args.get("$skip", "").isdigit() else 0
    children = mailbox.child_folders(parent.id)
    body: dict[str, Any] = {
        "@odata.context": f"{call.state.urls.graph_url}/$metadata#Collection(mailFolder)",
        "value": [_folder_json(mailbox, f) for f in children[skip : skip + max(top, 1)]],
    }
    if skip + top < len(children):
        link = f"{call.state.urls.base_url}{quote(call.request.path)}"
        body["@odata.nextLink"] = f"{link}?$top={top}&$skip={skip + top}"
    return json_response(body)


def mail_folders(call: Call) -> Response:
    """Serve ``GET /me/mailFolders``: the folders under the root, paged by ``$top``."""
    with call.state.lock:
        _, mailbox = _mailbox(call)
        return _folder_page(call, mailbox, mailbox.root)


def mail_folder(call: Call) -> Response:
    """Serve ``GET /me/mailFolders/{id}``."""
    with call.state.lock:
        _, mailbox = _mailbox(call)
        folder = _folder(call, mailbox)
        if not isinstance(folder, Folder):
            return folder
        return json_response(_folder_json(mailbox, folder))


def child_folders(call: Call) -> Response:
    """Serve ``GET /me/mailFolders/{id}/childFolders``."""
    with call.state.lock:
        _, mailbox = _mailbox(call)
        folder = _folder(call, mailbox)
        if not isinstance(folder, Folder):
            return folder
        return _folder_page(call, mailbox, folder)


def folder_messages(call: Call) -> Response:
    """Serve ``GET /me/mailFolders/{id}/messages`` (newest first, ``$top``/``$skip`` paging)."""
    refused = require_mail_scope(call)
    if refused is not None:
        return refused
    args = call.request.args
    top = int(args["$top"]) if args.get("$top", "").isdigit() else DEFAULT_FOLDER_PAGE
    skip = int(args["$skip"]) if args.get("$skip", "").isdigit() else 0
    select = select_fields(args.get("$select"))
    with call.state.lock:
        _, mailbox = _mailbox(call)
        folder = _folder(call, mailbox)
        if not isinstance(folder, Folder):
            return folder
        inside = sorted(
            mailbox.messages_in(folder.id),
            key=lambda m: str(m.data.get("receivedDateTime") or m.created),
            reverse=True,
        )
        immutable = wants_immutable_ids(call)
        value = [
            render_message(m, immutable=immutable, select=select) for m in inside[skip : skip + top]
        ]
    body: dict[str, Any] = {"value": value}
    if skip + top < len(inside):
        link = f"{call.state.urls.base_url}{quote(call.request.path)}?$top={top}&$skip={skip + top}"
        body["@odata.nextLink"] = link + (f"&$select={args['$select']}" if select else "")
    return json_response(body)


def messages_delta(call: Call) -> Response:
    """Serve ``GET /me/mailFolders/{id}/messages/delta``."""
    refused = require_mail_scope(call)
    if refused is not None:
        return refused
    with call.state.lock:
        user, mailbox = _mailbox(call)
        folder = _folder(call, mailbox)
        if not isinstance(folder, Folder):
            return folder
        return delta.delta_page(call, user.oid, folder, mailbox)


def message(call: Call) -> Response:
    """Serve ``GET /me/messages/{id}``."""
    refused = require_mail_scope(call)
    if refused is not None:
        return refused
    select = select_fields(call.request.args.get("$select"))
    with call.state.lock:
        _, mailbox = _mailbox(call)
        found = mailbox.find_message(call.args["message_id"])
        if found is None:
            message = "The specified object was not found in the store."
            return graph_error(call, 404, "ErrorItemNotFound", message)
        body = render_message(found, immutable=wants_immutable_ids(call), select=select)
    owner = call.user.oid if call.user else ""
    context = f"{call.state.urls.graph_url}/$metadata#users('{owner}')/messages/$entity"
    return json_response({"@odata.context": context, **body})


_ROUTES: dict[str, tuple[str, Handler]] = {
    "": ("me", me),
    "/mailFolders": ("mail_folders", mail_folders),
    "/mailFolders/<path:folder>/messages/delta": ("messages_delta", messages_delta),
    "/mailFolders/<path:folder>/messages": ("folder_messages", folder_messages),
    "/mailFolders/<path:folder>/childFolders": ("child_folders", child_folders),
    "/mailFolders/<path:folder>": ("mail_folder", mail_folder),
    "/messages/<path:message_id>": ("message", message),
}


def _prepare(call: Call) -> Response | None:
    """Refuse a request body over 4 MB as Graph does (BR-09), then authenticate."""
    return sending.too_large(call) or authenticate(call)


def service() -> Service:
    """Return the Graph surface, mounted under ``/graph/v1.0``."""
    rules = []
    routes = [(suffix, endpoint, "GET") for suffix, (endpoint, _) in _ROUTES.items()]
    routes += [(suffix, endpoint, method) for suffix, endpoint, method, _ in calendarview.ROUTES]
    routes += [(suffix, endpoint, method) for suffix, endpoint, method, _ in sending.ROUTES]
    routes += [(suffix, endpoint, method) for suffix, endpoint, method, _ in attachments.ROUTES]
    for suffix, endpoint, method in routes:
        rules.append(Rule(f"{PREFIX}/me{suffix}", endpoint=endpoint, methods=[method]))
        rules.append(
            Rule(f"{PREFIX}/users/<user_key>{suffix}", endpoint=endpoint, methods=[method])
        )
    handlers = dict(_ROUTES.values())
    handlers.update({endpoint: handler for _, endpoint, _, handler in calendarview.ROUTES})
    handlers.update({endpoint: handler for _, endpoint, _, handler in sending.ROUTES})
    handlers.update({endpoint: handler for _, endpoint, _, handler in attachments.ROUTES})
    return Service(
        name="graph",
        url_map=Map(rules, strict_slashes=False, merge_slashes=False),
        handlers=handlers,
        prepare=_prepare,
        error=graph_error,
    )
