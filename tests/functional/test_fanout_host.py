"""The sync timer through the local Functions host: stage 1, stage 2 and the mail worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient

from devstack.stack import LocalStack
from shared.adapters.tablelimits import table_key
from shared.adapters.tables import TableEntityStore
from shared.sync.connections import MAIL
from shared.sync.connections import TABLE as CONNECTIONS
from shared.sync.schedule import parse_slot, slot_of, slot_text
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


def last_slot(tenant: Tenant, upn: str) -> str:
    """The slot of the mail connection's last completed round, as its row records it."""
    assert tenant.stack.azurite is not None
    service = TableServiceClient.from_connection_string(tenant.stack.azurite.connection_string)
    row = TableEntityStore(service).get(
        CONNECTIONS, table_key(tenant.tenant_id), table_key(tenant.users[upn], MAIL)
    )
    assert row is not None
    return str(row.get("lastSlot") or "")


def test_a_second_copy_of_a_slots_job_is_skipped_once_its_round_is_done(tenant: Tenant) -> None:
    """A slot's job delivered twice (a send retried after its answer was lost) runs one round."""
    # GIVEN a connected user whose round ran through the fan-out for a slot
    tenant.add_company("Acme", ["acme.example"])
    upn = tenant.add_user("vic")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    tenant.sync()
    slot = last_slot(tenant, upn)
    assert slot
    before = delta_requests(tenant, upn)
    ids = {"kind": "mail", "tenant": tenant.tenant_id, "user": tenant.users[upn]}

    # WHEN a second copy of that slot's job arrives, and then a job sent by hand (no slot)
    tenant.stack.run_function("mail_sync_worker", json.dumps({**ids, "slot": slot}))
    tenant.stack.wait_idle(queues=QUEUES)
    after_copy = delta_requests(tenant, upn)
    tenant.stack.run_function("mail_sync_worker", json.dumps(ids))
    tenant.stack.wait_idle(queues=QUEUES)

    # THEN the copy read nothing from Graph, while the job without a slot ran a round
    assert after_copy == before
    assert delta_requests(tenant, upn) - after_copy == 2


def test_a_job_with_a_slot_a_day_ahead_runs_but_holds_no_later_round_back(tenant: Tenant) -> None:
    """A job from a fast-clock timer (or sent by hand) with a future slot records no slot."""
    # GIVEN a connected user whose round ran through the fan-out
    tenant.add_company("Acme", ["acme.example"])
    upn = tenant.add_user("wes")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    tenant.sync()
    recorded = last_slot(tenant, upn)
    ids = {"kind": "mail", "tenant": tenant.tenant_id, "user": tenant.users[upn]}

    # WHEN a job for a slot a day ahead arrives, then the same slot's job again
    ahead = slot_text(parse_slot(datetime.now(UTC).isoformat()) + timedelta(days=1))
    counts = []
    for _ in range(2):
        before = delta_requests(tenant, upn)
        tenant.stack.run_function("mail_sync_worker", json.dumps({**ids, "slot": ahead}))
        tenant.stack.wait_idle(queues=QUEUES)
        counts.append(delta_requests(tenant, upn) - before)

    # THEN both ran a round and the connection still records the slot it really did
    assert counts == [2, 2]
    assert last_slot(tenant, upn) == recorded
