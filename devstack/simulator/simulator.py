"""The Microsoft 365 simulator: Entra ID, Microsoft Graph mail and Key Vault on loopback HTTPS.

One HTTPS port serves identity (``/{tenant}/...``), Graph (``/graph/v1.0``) and the ``/_sim``
control API; a second port serves Key Vault at its root, as a vault host does. All state lives in
memory behind one lock.
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from devstack.simulator import attachments, calendarops, operations, sending
from devstack.simulator.app import main_app, vault_app
from devstack.simulator.state import SimState

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime
    from pathlib import Path

    from _typeshed.wsgi import WSGIApplication

    from devstack.simulator.directory import SimApp, SimUser
    from devstack.simulator.faults import FaultRule, RequestRecord
    from devstack.simulator.icsload import CalendarLoad
    from devstack.tls import TlsMaterial

logger = logging.getLogger(__name__)
# How often the serving threads look for a stop request; keeps stop() quick in tests.
_POLL_INTERVAL_S = 0.05


class _QuietRequestHandler(WSGIRequestHandler):
    """Logs each request at DEBUG without its query string, which can carry codes and tokens."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug(
            "simulator http request",
            extra={"method": self.command, "path": self.path.split("?", 1)[0], "status": code},
        )


class Simulator:
    """Simulated Microsoft 365 for one test or demo; see the package docstring for the surface."""

    def __init__(
        self, tls: TlsMaterial, *, api_audience: str, vault_tenant_id: str | None = None
    ) -> None:
        """Prepare a simulator; nothing listens until ``start``.

        Args:
            tls: Certificate and key to serve with (see ``devstack.tls``).
            api_audience: The ``aud`` of tokens from ``issue_api_token`` by default.
            vault_tenant_id: The tenant the vault belongs to; its challenge names this tenant and
                it accepts only tokens from it. A random GUID when not given.
        """
        self._tls = tls
        self.state = SimState(api_audience=api_audience)
        if vault_tenant_id is not None:
            self.state.vault_tenant_id = vault_tenant_id
        self._servers: list[BaseWSGIServer] = []

    # Lifecycle -----------------------------------------------------------------------------

    def _serve(self, host: str, port: int, app: WSGIApplication) -> BaseWSGIServer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self._tls.cert_pem), str(self._tls.key_pem))
        server = make_server(
            host,
            port,
            app,
            threaded=True,
            request_handler=_QuietRequestHandler,
            ssl_context=context,
        )
        thread = threading.Thread(
            target=server.serve_forever, args=(_POLL_INTERVAL_S,), name="simulator", daemon=True
        )
        thread.start()
        self._servers.append(server)
        return server

    def start(self, host: str = "127.0.0.1", port: int = 0, vault_port: int = 0) -> None:
        """Start both HTTPS servers in daemon threads; port 0 picks a free port."""
        if self._servers:
            message = "the simulator is already running; stop() it first"
            raise RuntimeError(message)
        shown = f"[{host}]" if ":" in host else host
        main = self._serve(host, port, main_app(self.state))
        self.state.urls.base_url = f"https://{shown}:{main.server_port}"
        vault = self._serve(host, vault_port, vault_app(self.state))
        self.state.urls.vault_url = f"https://{shown}:{vault.server_port}"
        logger.info(
            "simulator started",
            extra={"port": main.server_port, "vault_port": vault.server_port},
        )

    def stop(self) -> None:
        """Stop both servers and wait for their threads."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    @property
    def base_url(self) -> str:
        """Return ``https://127.0.0.1:P``, the root of identity, Graph and control."""
        return self.state.urls.base_url

    @property
    def authority_host(self) -> str:
        """Return the authority host to give MSAL and azure-identity (the base URL)."""
        return self.state.urls.base_url

    @property
    def graph_url(self) -> str:
        """Return the Graph v1.0 root, ``{base_url}/graph/v1.0``."""
        return self.state.urls.graph_url

    @property
    def vault_url(self) -> str:
        """Return the vault URL, ``https://127.0.0.1:V``."""
        return self.state.urls.vault_url

    @property
    def jwks_url(self) -> str:
        """Return the URL of the signing keys (``/common/discovery/v2.0/keys``)."""
        return f"{self.base_url}/common/discovery/v2.0/keys"

    @property
    def vault_tenant_id(self) -> str:
        """Return the tenant the vault belongs to."""
        return self.state.vault_tenant_id

    # Directory and identity ---------------------------------------------------------------

    def add_user(
        self,
        tenant_id: str,
        upn: str,
        display_name: str | None = None,
        oid: str | None = None,
        time_zone: str = "UTC",
    ) -> SimUser:
        """Create a user, with a mailbox holding the well-known folders."""
        return operations.add_user(
            self.state, tenant_id, upn, display_name=display_name, oid=oid, time_zone=time_zone
        )

    def register_app(
        self, client_id: str, client_secret: str, redirect_uris: Iterable[str] = ()
    ) -> SimApp:
        """Register a confidential client; it can also get app-only tokens for itself."""
        return operations.register_app(self.state, client_id, client_secret, redirect_uris)

    def issue_api_token(
        self,
        tenant_id: str,
        oid: str,
        *,
        roles: Iterable[str] = (),
        upn: str | None = None,
        audience: str | None = None,
        expires_in: int = 3600,
        not_before: float | None = None,
    ) -> str:
        """Return a bearer token for the product's API, as Entra would issue it."""
        return operations.issue_api_token(
            self.state,
            tenant_id,
            oid,
            roles=roles,
            upn=upn,
            audience=audience,
            expires_in=expires_in,
            not_before=not_before,
        )

    def revoke_refresh_tokens(
        self,
        upn: str,
        *,
        client_id: str | None = None,
        error_code: int = 50173,
        error: str = "invalid_grant",
    ) -> None:
        """Make a user's refresh tokens fail with ``error`` and ``error_code``.

        Use 50173 for revoked grants, 65001 for withdrawn consent, 70008 or 700082 for
        inactivity, and ``error="interaction_required"`` with 50076 for multi-factor
        authentication a new sign-in must complete. A new consent lifts the revocation.
        """
        with self.state.lock:
            user = self.state.directory.get_user(upn)
            self.state.grants.revoke(user.oid, client_id, error_code, error)

    def advance_time(self, seconds: float) -> None:
        """Move the simulator's clock forward for issuing and checking tokens and codes."""
        self.state.clock.advance(seconds)

    # Faults and the request log -------------------------------------------------------------

    def add_fault(self, rule: FaultRule) -> None:
        """Answer matching requests with the rule's canned response (see ``FaultRule``)."""
        with self.state.lock:
            self.state.faults.add(rule)

    def clear_faults(self) -> None:
        """Drop every fault rule."""
        with self.state.lock:
            self.state.faults.clear()

    def requests_seen(self) -> list[RequestRecord]:
        """Return every request served so far (method, path, user, status, Prefer), oldest first."""
        with self.state.lock:
            return list(self.state.log)

    # Mailbox concurrency (BR-06) -------------------------------------------------------------

    def set_mailbox_concurrency(self, limit: int | None, retry_after_s: int | None = None) -> None:
        """Refuse Graph requests over ``limit`` in flight per mailbox; ``None`` only counts them.

        A refused request gets 429 ``ApplicationThrottled`` (MailboxConcurrency) with
        ``Retry-After: retry_after_s``. The default is Outlook's limit, 4, with 2 seconds.
        """
        self.state.concurrency.configure(limit, retry_after_s)

    def peak_concurrency(self, upn: str) -> int:
        """Return the most Graph requests a mailbox had in flight at once so far."""
        user, _ = self.state.mailbox(upn)
        return self.state.concurrency.stats(user.oid)[0]

    def concurrency_refusals(self, upn: str) -> int:
        """Return how many Graph requests for a mailbox were refused as over its limit."""
        user, _ = self.state.mailbox(upn)
        return self.state.concurrency.stats(user.oid)[1]

    # Key Vault -----------------------------------------------------------------------------

    def vault_set(self, name: str, value: str) -> str:
        """Store a new version of a secret and return the version id."""
        with self.state.lock:
            _, version = self.state.vault.set(name, value, int(self.state.clock.now()))
            return version.version

    def vault_lags(self, *, delete_s: float = 0.0, purge_s: float = 0.0) -> None:
        """Make the vault lag as Key Vault does after a delete and after a purge.

        For ``delete_s`` after a delete, purging answers 409 ``ObjectIsBeingDeleted``; for
        ``purge_s`` after a purge, setting the name still answers 409 ``ObjectIsBeingDeleted``.
        """
        with self.state.lock:
            self.state.vault.delete_lag_s = delete_s
            self.state.vault.purge_lag_s = purge_s

    def vault_enable(self, name: str, version: str, *, enabled: bool) -> None:
        """Enable or disable one version; reading a disabled one answers 403 ``SecretDisabled``."""
        with self.state.lock:
            self.state.vault.enable(name, version, enabled=enabled)

    def vault_get(self, name: str) -> str:
        """Return the newest value of a live secret; raise ``VaultError`` when there is none."""
        with self.state.lock:
            return self.state.vault.get(name)[1].value

    # Mailboxes -----------------------------------------------------------------------------

    def add_message(self, upn: str, folder: str, message: dict[str, Any]) -> str:
        """Add one Graph-shaped message (without id) to a folder; return its immutable id."""
        return operations.load_messages(self.state, upn, folder, [message])[0]

    def load_messages(self, upn: str, folder: str, messages: Iterable[dict[str, Any]]) -> list[str]:
        """Add many messages to a folder; return their immutable ids in order."""
        return operations.load_messages(self.state, upn, folder, messages)

    def load_eml(self, upn: str, folder: str, raw: bytes) -> str:
        """Parse an RFC 822 message with ``devstack.mailload`` and add it to a folder."""
        from devstack.mailload import graph_message_from_eml  # noqa: PLC0415 - optional module

        return self.add_message(upn, folder, graph_message_from_eml(raw))

    def update_message(self, upn: str, message_id: str, changes: dict[str, Any]) -> None:
        """Change properties of a message (e.g. ``{"isRead": True}``)."""
        operations.update_message(self.state, upn, message_id, changes)

    def move_message(self, upn: str, message_id: str, folder: str) -> None:
        """Move a message to another folder; its REST id changes, its immutable id does not."""
        operations.move_message(self.state, upn, message_id, folder)

    def delete_message(self, upn: str, message_id: str) -> None:
        """Delete a message permanently."""
        operations.delete_message(self.state, upn, message_id)

    def folder_id(self, upn: str, folder: str) -> str:
        """Return a folder's id from its well-known name, display name or id."""
        return operations.folder_id(self.state, upn, folder)

    def create_folder(self, upn: str, display_name: str, parent: str | None = None) -> str:
        """Create a folder under ``parent`` (the mailbox root when None); return its id."""
        return operations.create_folder(self.state, upn, display_name, parent)

    def messages(self, upn: str, folder: str) -> list[dict[str, Any]]:
        """Return the Graph JSON, with immutable ids, of every message in a folder."""
        return operations.list_messages(self.state, upn, folder)

    def repeat_items_in_delta(self, upn: str, *, repeat: bool = True) -> None:
        """Make a mailbox's delta pages list every message twice, as Graph has been seen to do."""
        with self.state.lock:
            _, mailbox = self.state.mailbox(upn)
            mailbox.repeat_in_delta = repeat

    def invalidate_delta_tokens(self, upn: str) -> None:
        """Make every delta and skip token of a mailbox answer 410 ``syncStateNotFound``."""
        with self.state.lock:
            _, mailbox = self.state.mailbox(upn)
            mailbox.invalidate_sync_state()

    def attachments(self, upn: str, message_id: str) -> list[dict[str, Any]]:
        """Return a message's attachments: id, name, contentType, size and ``content`` bytes."""
        return attachments.attachments(self.state, upn, message_id)

    def internet_headers(self, upn: str, message_id: str) -> dict[str, str]:
        """Return a message's ``internetMessageHeaders`` by name (``$select``-only in Graph)."""
        return sending.internet_headers(self.state, upn, message_id)

    def set_mailbox_time_zone(self, upn: str, zone: str) -> None:
        """Set the ``timeZone`` that ``GET /me/mailboxSettings`` answers for a mailbox."""
        sending.set_time_zone(self.state, upn, zone)

    def issue_graph_token(
        self, upn: str, scopes: Iterable[str] = ("Mail.ReadWrite", "Mail.Send"), client_id: str = ""
    ) -> str:
        """Return a delegated Graph access token for a user without a sign-in, for tests."""
        return sending.issue_graph_token(self.state, upn, scopes, client_id or "sim-tests")

    # Calendars -----------------------------------------------------------------------------

    def add_event(self, upn: str, event: dict[str, Any]) -> str:
        """Add a Graph-shaped event (single, or a series master); return its id."""
        return calendarops.load_events(self.state, upn, [event])[0]

    def load_events(self, upn: str, events: Iterable[dict[str, Any]]) -> list[str]:
        """Add many Graph-shaped events to a user's primary calendar; return their ids."""
        return calendarops.load_events(self.state, upn, events)

    def load_ics(self, upn: str, raw: bytes) -> CalendarLoad:
        """Add the events of an ``.ics`` document; raise ``CalendarLoadError`` when it cannot."""
        return calendarops.load_ics_bytes(self.state, upn, raw)

    def load_calendar_file(self, upn: str, path: Path) -> list[str]:
        """Load an ``.ics`` or Graph-shaped ``.json`` file into a user's calendar."""
        return calendarops.load_calendar_file(self.state, upn, path)

    def update_event(self, upn: str, event_id: str, changes: dict[str, Any]) -> None:
        """Change an event, a whole series (master id) or one occurrence (then an exception)."""
        calendarops.update_event(self.state, upn, event_id, changes)

    def cancel_occurrence(self, upn: str, occurrence_id: str) -> None:
        """Cancel one occurrence of a series."""
        calendarops.cancel_occurrence(self.state, upn, occurrence_id)

    def cancel_event(self, upn: str, event_id: str) -> None:
        """Mark a meeting cancelled by its organiser: it stays, with ``isCancelled`` true."""
        calendarops.cancel_event(self.state, upn, event_id)

    def delete_event(self, upn: str, event_id: str) -> None:
        """Delete an event or a whole series."""
        calendarops.delete_event(self.state, upn, event_id)

    def event_instances(
        self, upn: str, low: datetime, high: datetime, event_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Return the Graph JSON (UTC) of the instances in a window, of one event when given."""
        return calendarops.instances(self.state, upn, low, high, event_id)

    def set_calendar_behaviour(self, *, legacy_series: bool, all_day_instants: bool) -> None:
        """Switch the old and new Graph behaviours of BR-04 and BR-05 (``CalendarBehaviour``)."""
        calendarops.set_behaviour(
            self.state, legacy_series=legacy_series, all_day_instants=all_day_instants
        )

    def invalidate_calendar_sync_state(self, upn: str) -> None:
        """Make every calendarView delta token of a user answer 410 ``syncStateNotFound``."""
        calendarops.invalidate_sync_state(self.state, upn)
