"""Consent for mail and for calendar: start it for a signed-in user, complete it in the callback.

Each kind is consented on its own, with its own scopes (``SCOPES_BY_KIND``): mail asks for
``Mail.ReadWrite``, ``Mail.Send`` and ``MailboxSettings.Read`` (sending makes drafts and
counts days in the mailbox's time zone), calendar for ``Calendars.ReadWrite``, both for
``User.Read`` and ``offline_access``. Whether the caller's role may connect a kind at all is
asked of a :class:`FeatureGate` before anything is written.

The OAuth state is 32 random bytes, stored with the sealed MSAL flow (which holds the PKCE
verifier and nonce) for ten minutes, deleted on first use with a conditional delete so a replay
loses, and bound to the user who started it: the account that consents must be that user.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from shared.adapters.tablelimits import table_key
from shared.adapters.tokens import SCOPES_BY_KIND
from shared.consent.crypto import Sealed
from shared.errors import (
    ConflictError,
    ConsentError,
    ForbiddenError,
    NotFoundError,
    SealedValueUnreadableError,
    ThrottledError,
    TransientError,
    ValidationError,
)
from shared.sync.connections import DUE_STATES, KINDS, MAIL, Connection, Folder
from shared.sync.defaultfolders import DEFAULT_FOLDERS, look_up_default_folders

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from shared.access.auth import Caller
    from shared.adapters.graph import GraphMailClient
    from shared.adapters.tables import TableEntityStore
    from shared.adapters.tokens import MsalTokenClient
    from shared.directory.service import DirectoryService
    from shared.sync.connectionstore import ConnectionStore

logger = logging.getLogger(__name__)

STATES = "consentstates"
STATE_TTL = timedelta(minutes=10)
STATE_ROW = "state"
MAX_FOLDERS = 50


class FeatureGate(Protocol):
    """Decides whether a caller's role may use a feature (``mail``, ``calendar``)."""

    def require_feature(self, caller: Caller, feature: str) -> None:
        """Raise ``ForbiddenError`` unless the caller's role may use the feature."""
        ...


class ConsentService:
    """Starts and completes consent, and lets a user choose folders to sync."""

    def __init__(
        self,
        *,
        tables: TableEntityStore,
        connections: ConnectionStore,
        msal: MsalTokenClient,
        graph: GraphMailClient,
        directory: DirectoryService,
        redirect_uri: str,
        features: FeatureGate,
    ) -> None:
        self._features = features
        self._tables = tables
        self._connections = connections
        self._msal = msal
        self._graph = graph
        self._directory = directory
        self._redirect_uri = redirect_uri
        self._cipher = connections.cipher

    def start(self, caller: Caller, kind: str = MAIL) -> str:
        """Begin consent for the caller and return the URL to send their browser to.

        Raises:
            ValidationError: when the kind is not one the product connects.
            NotFoundError: when the caller's tenant is not set up.
            ForbiddenError: when the caller is not a user of the tenant, or their role may not
                connect this kind.
        """
        if kind not in KINDS:
            field = "kind"
            raise ValidationError(field, f"must be one of {', '.join(KINDS)}")
        if self._directory.get_tenant(caller.tenant_id) is None:
            msg = f"tenant {caller.tenant_id} is not set up; an admin must set it up"
            raise NotFoundError(msg)
        user = self._directory.get_user(caller.tenant_id, caller.user_id)
        if user is None:
            msg = "the caller is not a registered user of this tenant"
            raise ForbiddenError(msg)
        self._features.require_feature(caller, kind)
        flow = self._msal.start_flow(SCOPES_BY_KIND[kind], self._redirect_uri, user.upn)
        state = str(flow["state"])
        sealed = self._cipher.seal(json.dumps(flow), state)
        expires = datetime.now(UTC) + STATE_TTL
        self._tables.create(
            STATES,
            {
                "PartitionKey": table_key(state),
                "RowKey": STATE_ROW,
                "tenantId": caller.tenant_id,
                "userId": caller.user_id,
                "kind": kind,
                "flow": sealed.ciphertext,
                "keyVersion": sealed.key_version,
                "expiresAt": expires.isoformat(),
            },
        )
        extra = {"tenant": caller.tenant_id, "user": caller.user_id, "kind": kind}
        logger.info("consent started", extra=extra)
        return str(flow["auth_uri"])

    def complete(self, params: Mapping[str, str]) -> Connection:
        """Finish consent from the authorisation response's query parameters.

        Raises:
            ConsentError: when the state is missing, unknown, replayed, expired, foreign or no
                longer readable (its key version gone), or consent was declined.
        """
        state = params.get("state", "")
        if state and not params.get("code") and not params.get("error"):
            # A cut-off redirect: leave the state unspent so the real one can still complete.
            msg = "missing_code"
            raise ConsentError(msg, "the callback carries no authorisation code", field="code")
        row = self._claim_state(state)
        flow = json.loads(self._open_flow(row, state))
        grant = self._msal.complete_flow(flow, dict(params))
        if (grant.tenant_id, grant.user_id) != (row["tenantId"], row["userId"]):
            msg = "wrong_user"
            raise ConsentError(msg, "the account that consented is not the one that started")
        kind = str(row["kind"])
        connection = self._connections.save_grant(grant, kind, SCOPES_BY_KIND[kind])
        if kind == MAIL and not connection.folders:
            connection = self._default_folders(connection)
        logger.info("consent completed", extra={"tenant": grant.tenant_id, "user": grant.user_id})
        return connection

    def _open_flow(self, row: Mapping[str, Any], state: str) -> str:
        """Open the sealed MSAL flow; one that will never open is a dead consent link."""
        try:
            return self._cipher.open(Sealed(str(row["flow"]), str(row["keyVersion"])), state)
        except SealedValueUnreadableError as error:
            msg = "unreadable_state"
            raise ConsentError(
                msg, "the consent link can no longer be read; start again"
            ) from error

    def _claim_state(self, state: str) -> dict[str, Any]:
        if not state:
            msg = "missing_state"
            raise ConsentError(msg, "the callback carries no state")
        row = self._tables.get(STATES, table_key(state), STATE_ROW)
        if row is None:
            msg = "unknown_state"
            raise ConsentError(msg, "the consent link is unknown or was already used")
        try:
            self._tables.delete(STATES, table_key(state), STATE_ROW, etag=row["_etag"])
        except ConflictError as error:
            msg = "replayed_state"
            raise ConsentError(msg, "the consent link was already used") from error
        if datetime.fromisoformat(str(row["expiresAt"])) < datetime.now(UTC):
            msg = "expired_state"
            raise ConsentError(msg, "the consent link expired; start again")
        return row

    def _default_folders(self, connection: Connection) -> Connection:
        """Choose Inbox and Sent Items; when Graph fails, leave it to the first sync job.

        The grant is stored and the authorisation code spent by now, so failing the callback
        would only ask the user to consent again for nothing.
        """
        try:
            token = self._connections.access_token(connection)
            folders = look_up_default_folders(self._graph, token)
        except (ThrottledError, TransientError) as error:
            logger.warning(
                "default folders not looked up at consent; the first sync job will",
                extra={"user": connection.user_id, "error_type": type(error).__name__},
            )
            return connection
        return self._connections.set_folders(connection, folders)

    def list_folders(self, caller: Caller) -> list[dict[str, Any]]:
        """Return the caller's mail folders, each marked whether it is synced."""
        connection = self._active(caller)
        token = self._connections.access_token(connection)
        chosen = {folder.folder_id for folder in connection.folders}
        return [
            {
                "id": folder["id"],
                "displayName": folder.get("displayName", ""),
                "path": folder.get("path", ""),
                "totalItemCount": folder.get("totalItemCount"),
                "selected": folder["id"] in chosen,
            }
            for folder in self._graph.list_mail_folders(token)
        ]

    def choose_folders(self, caller: Caller, folder_ids: Any) -> Connection:
        """Set the folders to sync, checked against the caller's mailbox.

        Raises:
            ValidationError: when the list is malformed or names a folder the mailbox lacks.
        """
        ids = _folder_ids(folder_ids)
        connection = self._active(caller)
        token = self._connections.access_token(connection)
        known = {folder["id"]: folder for folder in self._graph.list_mail_folders(token)}
        for index, folder_id in enumerate(ids):
            if folder_id not in known:
                msg = f"folderIds[{index}]"
                raise ValidationError(msg, "must be a folder of your mailbox")
        chosen = [
            Folder(i, str(known[i].get("path") or known[i].get("displayName", ""))) for i in ids
        ]
        return self._connections.set_folders(connection, chosen)

    def _active(self, caller: Caller) -> Connection:
        connection = self._connections.get(caller.tenant_id, caller.user_id, MAIL)
        # A connection in error (its last job failed) still has a working grant: its user may
        # list folders and change the choice, for example to drop a folder deleted in Outlook.
        if connection is None or connection.state not in DUE_STATES:
            msg = "no active mail connection; connect your mailbox first"
            raise NotFoundError(msg)
        return connection


def _folder_ids(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        msg = "folderIds"
        raise ValidationError(msg, "must be a non-empty list of folder ids")
    if len(value) > MAX_FOLDERS:
        msg = "folderIds"
        raise ValidationError(msg, f"must hold at most {MAX_FOLDERS} folders")
    ids: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            msg = f"folderIds[{index}]"
            raise ValidationError(msg, "must be a non-empty string")
        if item not in ids:
            ids.append(item)
    return ids


def default_folder_names() -> Sequence[str]:
    """Return the well-known folders a new connection syncs until the user chooses."""
    return DEFAULT_FOLDERS
