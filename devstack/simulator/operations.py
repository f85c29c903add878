"""The simulator's scripted operations, shared by the Python API and the ``/_sim`` HTTP API."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from devstack.simulator import ids, tokens
from devstack.simulator.directory import SimApp, SimUser
from devstack.simulator.messages import render_message

if TYPE_CHECKING:
    from collections.abc import Iterable

    from devstack.simulator.state import SimState


def add_user(
    state: SimState,
    tenant_id: str,
    upn: str,
    *,
    display_name: str | None = None,
    oid: str | None = None,
    time_zone: str = "UTC",
) -> SimUser:
    """Create a user with an empty mailbox."""
    if not ids.is_guid(tenant_id):
        message = f"tenant_id must be a GUID, got {tenant_id!r}"
        raise ValueError(message)
    name = display_name or upn.split("@", 1)[0]
    user = SimUser(tenant_id, upn, name, (oid or ids.guid()).lower(), time_zone)
    state.add_user(user)
    return user


def register_app(
    state: SimState, client_id: str, client_secret: str, redirect_uris: Iterable[str] = ()
) -> SimApp:
    """Register (or replace) a confidential client."""
    app = SimApp(client_id, client_secret, tuple(redirect_uris))
    with state.lock:
        previous = state.directory.find_app(client_id)
        if previous is not None:
            app = SimApp(client_id, client_secret, app.redirect_uris, previous.principal_oid)
        state.directory.register_app(app)
    return app


def load_messages(
    state: SimState, upn: str, folder: str, messages: Iterable[dict[str, Any]]
) -> list[str]:
    """Add messages to a folder and return their immutable ids."""
    with state.lock:
        _, mailbox = state.mailbox(upn)
        now = state.clock.iso()
        return [mailbox.add_message(folder, m, now).immutable_id for m in messages]


def update_message(state: SimState, upn: str, message_id: str, changes: dict[str, Any]) -> None:
    """Change properties of a message, as a user or a rule would."""
    with state.lock:
        _, mailbox = state.mailbox(upn)
        mailbox.update_message(message_id, changes, state.clock.iso())


def move_message(state: SimState, upn: str, message_id: str, folder: str) -> None:
    """Move a message to another folder."""
    with state.lock:
        _, mailbox = state.mailbox(upn)
        mailbox.move_message(message_id, folder, state.clock.iso())


def delete_message(state: SimState, upn: str, message_id: str) -> None:
    """Delete a message permanently."""
    with state.lock:
        _, mailbox = state.mailbox(upn)
        mailbox.delete_message(message_id)


def folder_id(state: SimState, upn: str, folder: str) -> str:
    """Return the id of a folder named by well-known name, display name or id."""
    with state.lock:
        _, mailbox = state.mailbox(upn)
        return mailbox.resolve_folder(folder).id


def create_folder(state: SimState, upn: str, display_name: str, parent: str | None) -> str:
    """Create a mail folder and return its id."""
    with state.lock:
        _, mailbox = state.mailbox(upn)
        return mailbox.create_folder(display_name, parent).id


def list_messages(state: SimState, upn: str, folder: str) -> list[dict[str, Any]]:
    """Return the Graph JSON (immutable ids) of every message in a folder."""
    with state.lock:
        _, mailbox = state.mailbox(upn)
        target = mailbox.resolve_folder(folder)
        return [render_message(m, immutable=True) for m in mailbox.messages_in(target.id)]


def issue_api_token(
    state: SimState,
    tenant_id: str,
    oid: str,
    *,
    roles: Iterable[str] = (),
    upn: str | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    expires_in: int = 3600,
    not_before: float | None = None,
) -> str:
    """Return a v2.0 bearer token for the product's API, signed like every simulator token.

    It is stamped with the machine's real clock, not the simulated one: the product checks API
    tokens against real time, and moving the simulated clock is meant to age only the tokens
    Microsoft issues to the product (codes, access and refresh tokens).
    """
    claims = tokens.api_claims(
        issuer=issuer or state.issuer(tenant_id),
        audience=audience or state.api_audience,
        tenant_id=tenant_id,
        oid=oid,
        roles=tuple(roles),
        upn=upn,
        now=time.time(),
        expires_in=expires_in,
        not_before=not_before,
    )
    return state.key.sign(claims)
