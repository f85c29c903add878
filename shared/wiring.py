"""Build the real adapters and services from settings, in one place, once per worker process.

Nothing here runs at import time: the Functions host indexes ``function_app.py`` before any
setting may be read, so each piece is built on first use and then kept for the process.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

from azure.data.tables import TableServiceClient
from azure.identity import ClientSecretCredential, DefaultAzureCredential
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from shared.access.auth import BearerAuthenticator
from shared.access.permissions import PermissionService
from shared.adapters.blobs import BlobBodyStore
from shared.adapters.graph import GraphMailClient
from shared.adapters.graphcalendar import GraphCalendarClient
from shared.adapters.graphsend import GraphSendClient
from shared.adapters.keyvault import KeyVaultSecretStore
from shared.adapters.queues import (
    CALENDAR_SYNC_POISON_QUEUE,
    FANOUT_POISON_QUEUE,
    MAIL_SYNC_POISON_QUEUE,
    OUTBOX_POISON_QUEUE,
    PURGE_POISON_QUEUE,
    JobQueue,
)
from shared.adapters.tables import TableEntityStore
from shared.adapters.tokens import MsalTokenClient
from shared.audit.log import AuditLog
from shared.consent.crypto import TokenCipher
from shared.consent.service import ConsentService
from shared.directory.service import DirectoryService
from shared.errors import ReauthRequiredError
from shared.meetings.service import MeetingService
from shared.power.purge import PurgeJobs, Releaser
from shared.power.tools import PowerTools
from shared.read.events import EventReadService
from shared.read.service import ReadService
from shared.rules.service import RuleService
from shared.rules.store import DecisionLog, RuleStore
from shared.sending.outbox import OutboxService
from shared.sending.worker import OutboxWorker
from shared.settings import Settings
from shared.sync.calendar import CalendarSyncService
from shared.sync.connections import CALENDAR, MAIL, connection_key
from shared.sync.connectionstore import ConnectionStore
from shared.sync.eventstore import EventStore
from shared.sync.mail import MailSyncService
from shared.sync.notices import ReauthNotifier
from shared.sync.planner import SyncPlanner
from shared.sync.poisoned import (
    PoisonedJobs,
    connection_handler,
    fanout_handler,
    outbox_handler,
    purge_handler,
)
from shared.sync.store import EmailStore

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


class Services:
    """The product's collaborators, each built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._storage_ready = threading.Lock()
        self._storage_created = False

    @functools.cached_property
    def credential(self) -> TokenCredential:
        """The app's own identity: a managed identity on Azure, a client secret locally."""
        identity = self.settings.app_identity
        if identity.client_secret and identity.client_id and identity.tenant_id:
            return ClientSecretCredential(
                identity.tenant_id,
                identity.client_id,
                identity.client_secret,
                authority=identity.authority_host,
                disable_instance_discovery=True,
            )
        return DefaultAzureCredential(managed_identity_client_id=identity.client_id)

    @functools.cached_property
    def tables(self) -> TableEntityStore:
        """Table Storage, with every table created on first use."""
        storage = self.settings.storage
        if storage.connection_string:
            client = TableServiceClient.from_connection_string(storage.connection_string)
        else:
            client = TableServiceClient(str(storage.table_uri), credential=self.credential)
        store = TableEntityStore(client)
        store.ensure_tables()
        return store

    @functools.cached_property
    def queue(self) -> JobQueue:
        """Storage Queues, with every queue created on first use."""
        storage = self.settings.storage
        if storage.connection_string:
            client = QueueServiceClient.from_connection_string(storage.connection_string)
        else:
            client = QueueServiceClient(str(storage.queue_uri), credential=self.credential)
        queue = JobQueue(client)
        queue.ensure_queues()
        return queue

    @functools.cached_property
    def blobs(self) -> BlobBodyStore:
        """Blob Storage for large bodies, with its container created on first use."""
        storage = self.settings.storage
        if storage.connection_string:
            client = BlobServiceClient.from_connection_string(storage.connection_string)
        else:
            client = BlobServiceClient(str(storage.blob_uri), credential=self.credential)
        blobs = BlobBodyStore(client)
        blobs.ensure_container()
        return blobs

    @functools.cached_property
    def secrets(self) -> KeyVaultSecretStore:
        """Key Vault secrets, cached in memory for a short time."""
        client = SecretClient(
            self.settings.key_vault_url,
            self.credential,
            verify_challenge_resource=self.settings.key_vault_verify_challenge_resource,
        )
        return KeyVaultSecretStore(client)

    @functools.cached_property
    def authenticator(self) -> BearerAuthenticator:
        """Validates API callers' bearer tokens."""
        return BearerAuthenticator(self.settings.authority_host, self.settings.api_audience)

    @functools.cached_property
    def msal(self) -> MsalTokenClient:
        """MSAL, with the app's client secret from Key Vault."""
        return MsalTokenClient(
            client_id=self.settings.client_id,
            authority=self.settings.msal_authority,
            client_secret=lambda: self.secrets.get(self.settings.client_secret_name).value,
        )

    @functools.cached_property
    def graph(self) -> GraphMailClient:
        """Microsoft Graph mail calls."""
        return GraphMailClient(
            self.settings.graph_base_url, page_size=self.settings.graph_page_size
        )

    @functools.cached_property
    def connections(self) -> ConnectionStore:
        """Connections with their encrypted token caches."""
        cipher = TokenCipher(self.secrets, self.settings.token_key_secret_name)
        return ConnectionStore(self.tables, cipher, self.msal, notify=ReauthNotifier(self.queue))

    @functools.cached_property
    def emails(self) -> EmailStore:
        """Stored emails and their indexes."""
        return EmailStore(self.tables, self.blobs)

    @functools.cached_property
    def directory(self) -> DirectoryService:
        """Tenants, users and companies."""
        return DirectoryService(self.tables, forget_company=self.emails.forget_company)

    @functools.cached_property
    def permissions(self) -> PermissionService:
        """Tenants' permission policies, and the checks of callers against them."""
        return PermissionService(self.tables, self.directory)

    @functools.cached_property
    def consent(self) -> ConsentService:
        """Consent start and callback, folder choice."""
        return ConsentService(
            tables=self.tables,
            connections=self.connections,
            msal=self.msal,
            graph=self.graph,
            directory=self.directory,
            redirect_uri=self.settings.consent_redirect_uri,
            features=self.permissions,
        )

    @functools.cached_property
    def planner(self) -> SyncPlanner:
        """The timer's fan-out."""
        return SyncPlanner(self.connections, self.queue, audit=self.audit)

    @functools.cached_property
    def poisoned_jobs(self) -> PoisonedJobs:
        """The sweep of every poison queue, each with what records its jobs."""
        handlers = {
            MAIL_SYNC_POISON_QUEUE: connection_handler(self.connections, MAIL),
            CALENDAR_SYNC_POISON_QUEUE: connection_handler(self.connections, CALENDAR),
            FANOUT_POISON_QUEUE: fanout_handler(self.planner),
            PURGE_POISON_QUEUE: purge_handler(self.purges),
            OUTBOX_POISON_QUEUE: outbox_handler(self.outbox_worker),
        }
        return PoisonedJobs(handlers, self.queue)

    @functools.cached_property
    def mail_sync(self) -> MailSyncService:
        """The mail sync worker."""
        return MailSyncService(
            connections=self.connections,
            graph=self.graph,
            directory=self.directory,
            emails=self.emails,
            queue=self.queue,
            tables=self.tables,
            rules=self.rule_store,
        )

    @functools.cached_property
    def graph_calendar(self) -> GraphCalendarClient:
        """Microsoft Graph calendar calls, over the mail client's transport."""
        return GraphCalendarClient(self.graph)

    @functools.cached_property
    def events(self) -> EventStore:
        """Stored calendar events and their indexes."""
        return EventStore(self.tables)

    @functools.cached_property
    def calendar_sync(self) -> CalendarSyncService:
        """The calendar sync worker."""
        return CalendarSyncService(
            connections=self.connections,
            graph=self.graph_calendar,
            directory=self.directory,
            events=self.events,
            queue=self.queue,
            tables=self.tables,
        )

    @functools.cached_property
    def event_reader(self) -> EventReadService:
        """The read API for calendar events."""
        return EventReadService(self.directory, self.events, self.permissions)

    @functools.cached_property
    def meetings(self) -> MeetingService:
        """Meetings created through the API."""
        return MeetingService(
            connections=self.connections,
            graph=self.graph_calendar,
            directory=self.directory,
            calendar_sync=self.calendar_sync,
        )

    @functools.cached_property
    def rule_store(self) -> RuleStore:
        """Blocking rules, address groups and switches."""
        return RuleStore(self.tables)

    @functools.cached_property
    def rules(self) -> RuleService:
        """Blocking rules for the API: CRUD, dry run, explain."""
        decisions = DecisionLog(self.tables, self.rule_store)
        return RuleService(self.rule_store, decisions, self.directory, self.emails)

    @functools.cached_property
    def purges(self) -> PurgeJobs:
        """Purge jobs, with what each kind of data is released by."""
        releasers: dict[str, Releaser] = {MAIL: self.emails, CALENDAR: self.events}
        return PurgeJobs(
            self.tables,
            self.queue,
            releasers,
            connection_key=connection_key,
            purged_before=self._purged_before,
            audit=self.audit,
        )

    def _purged_before(self, tenant_id: str, user_id: str, kind: str) -> str | None:
        """Return a connection's purge watermark as stored, or None."""
        connection = self.connections.get(tenant_id, user_id, kind)
        return connection.purged_before if connection else None

    @functools.cached_property
    def power(self) -> PowerTools:
        """Delete, revoke and purge."""
        return PowerTools(
            directory=self.directory,
            permissions=self.permissions,
            reader=self.reader,
            connections=self.connections,
            emails=self.emails,
            purges=self.purges,
            events=self.events,
            event_reader=self.event_reader,
        )

    @functools.cached_property
    def audit(self) -> AuditLog:
        """The append-only audit log."""
        return AuditLog(self.tables)

    @functools.cached_property
    def outbox(self) -> OutboxService:
        """Emails to send: checked, recorded and queued."""
        return OutboxService(
            tables=self.tables,
            blobs=self.blobs,
            queue=self.queue,
            directory=self.directory,
            permissions=self.permissions,
            reader=self.reader,
            connections=self.connections,
        )

    @functools.cached_property
    def outbox_worker(self) -> OutboxWorker:
        """The outbox worker: draft, attachments and send through Graph."""
        return OutboxWorker(
            tables=self.tables,
            blobs=self.blobs,
            queue=self.queue,
            graph=GraphSendClient(self.graph),
            tokens=self._mail_token,
            settings=self.directory,
        )

    def _mail_token(self, tenant_id: str, user_id: str, *, force_refresh: bool = False) -> str:
        connection = self.connections.get(tenant_id, user_id, MAIL)
        if connection is None:
            code = "no_connection"
            raise ReauthRequiredError(code, "the user has no mail connection")
        return self.connections.access_token(connection, force_refresh=force_refresh)

    @functools.cached_property
    def reader(self) -> ReadService:
        """The read API."""
        return ReadService(self.directory, self.emails, self.permissions)


@functools.cache
def services() -> Services:
    """Return the process-wide services, reading settings on first call."""
    return Services(Settings.from_env())
