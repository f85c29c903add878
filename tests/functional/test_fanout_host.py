"""The sync timer through the local Functions host: stage 1, stage 2 and the mail worker."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from devstack.stack import LocalStack
from shared.sync.schedule import slot_of
from tests.functional.conftest import Tenant
from tests.functional.test_mail_sync import message

pytestmark = pytest.mark.stack

QUEUES = ("sync-fanout", "mail-sync")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack of this module's own, whose host keeps the timer the shared stack switches off."""
    local = LocalStack(tmp_path_factory.mktemp("timerstack")).start()
    yield local
    local.stop()


def delta_requests(tenant: Tenant, upn: str) -> int:
    oid = tenant.users[upn]
    seen = tenant.stack.sim.requests_seen()
    return sum(1 for r in seen if r.user == oid and r.path.endswith("/messages/delta"))


def run_timer_twice(tenant: Tenant) -> str | None:
    """Run the timer twice and wait for the workers; return the slot if both ran in one."""
    slot = slot_of(datetime.now(UTC))
    for _ in range(2):
        tenant.stack.run_function("sync_fanout")
        tenant.stack.wait_idle(queues=QUEUES)
    return slot if slot_of(datetime.now(UTC)) == slot else None


def test_timer_twice_in_one_slot_syncs_each_connection_once(tenant: Tenant) -> None:
    """Two timer runs for one slot give one sync round per connection, through the host (BR-15)."""
    # GIVEN two connected users with customer mail
    tenant.add_company("Acme", ["acme.example"])
    users = [tenant.add_user("tia"), tenant.add_user("uma")]
    for upn in users:
        tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
        tenant.stack.sim.load_messages(upn, "inbox", [message("a@acme.example", [upn], "Hi")])

    # WHEN the timer runs twice within one slot (again if a slot boundary fell in between)
    for _ in range(2):
        before = {upn: delta_requests(tenant, upn) for upn in users}
        slot = run_timer_twice(tenant)
        if slot is not None:
            break

    # THEN each user's two folders were read once, and the mail was stored once
    assert slot is not None
    for upn in users:
        assert delta_requests(tenant, upn) - before[upn] == 2
    assert len(tenant.company_emails("Acme")) == 2
