"""Everything the simulator knows, behind one lock."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from devstack.simulator import ids
from devstack.simulator.calendar import Calendar, CalendarBehaviour
from devstack.simulator.calendarsync import CalendarSync
from devstack.simulator.clock import SimClock
from devstack.simulator.concurrency import MailboxConcurrency
from devstack.simulator.directory import Directory, SimUser
from devstack.simulator.faults import FaultBook, RequestRecord
from devstack.simulator.grants import GrantStore
from devstack.simulator.mailbox import Mailbox
from devstack.simulator.sending import SendBook
from devstack.simulator.tokens import SigningKey
from devstack.simulator.vaultstore import VaultStore

if TYPE_CHECKING:
    from devstack.simulator.faults import FaultRule


@dataclass(slots=True)
class SimUrls:
    """Where the simulator listens; filled in when the servers start."""

    base_url: str = ""
    vault_url: str = ""

    @property
    def graph_url(self) -> str:
        """Return the Graph v1.0 root."""
        return f"{self.base_url}/graph/v1.0"


@dataclass(slots=True)
class SimState:
    """The simulated tenant(s), mailboxes, vault and bookkeeping.

    Every reader and writer holds ``lock``; it is re-entrant so helpers can nest.
    """

    api_audience: str
    vault_tenant_id: str = field(default_factory=ids.guid)
    lock: threading.RLock = field(default_factory=threading.RLock)
    clock: SimClock = field(default_factory=SimClock)
    key: SigningKey = field(default_factory=SigningKey)
    urls: SimUrls = field(default_factory=SimUrls)
    directory: Directory = field(default_factory=Directory)
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    calendars: dict[str, Calendar] = field(default_factory=dict)
    calendar_syncs: dict[str, CalendarSync] = field(default_factory=dict)
    calendar_behaviour: CalendarBehaviour = field(default_factory=CalendarBehaviour)
    grants: GrantStore = field(default_factory=GrantStore)
    vault: VaultStore = field(default_factory=VaultStore)
    faults: FaultBook = field(default_factory=FaultBook)
    concurrency: MailboxConcurrency = field(default_factory=MailboxConcurrency)
    log: list[RequestRecord] = field(default_factory=list)
    sending: SendBook = field(default_factory=SendBook)

    def issuer(self, tenant_id: str) -> str:
        """Return the v2.0 issuer of ``tenant_id`` (a GUID, or ``{tenantid}`` for templates)."""
        return f"{self.urls.base_url}/{tenant_id}/v2.0"

    def add_user(self, user: SimUser) -> None:
        """Add a user with an empty mailbox (the well-known folders) and an empty calendar."""
        with self.lock:
            self.directory.add_user(user)
            self.mailboxes[user.oid] = Mailbox()
            calendar = Calendar()
            self.calendars[user.oid] = calendar
            self.calendar_syncs[user.oid] = CalendarSync(calendar)

    def mailbox(self, user_key: str) -> tuple[SimUser, Mailbox]:
        """Return a user (by oid or UPN) and their mailbox; raise KeyError when unknown."""
        with self.lock:
            user = self.directory.get_user(user_key)
            return user, self.mailboxes[user.oid]

    def take_fault(
        self, service: str, method: str, path: str, keys: tuple[str, ...]
    ) -> FaultRule | None:
        """Return the fault rule that answers this request instead of the handler, if any."""
        with self.lock:
            return self.faults.take(service, method, path, keys)

    def record(self, entry: RequestRecord) -> None:
        """Append a served request to the log."""
        with self.lock:
            self.log.append(entry)
