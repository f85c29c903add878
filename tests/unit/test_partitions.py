"""Partition keys spread the sync load (Table Storage: ~2,000 entities/s per partition)."""

from __future__ import annotations

import uuid
from collections import Counter

from shared.adapters.tablelimits import table_key
from shared.sync.connections import MAIL, Connection
from shared.sync.emailrows import email_key, email_partition
from shared.sync.slotclaims import SLOT_SHARDS, slot_partition

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
PARTITION_TARGET = 2_000
"""Entities per second one partition is built to serve."""


def connection(user_id: str, tenant_id: str = TENANT) -> Connection:
    """An active mail connection of one user."""
    return Connection(tenant_id, user_id, MAIL, "active", "", (), "", ())


def test_email_writes_of_one_tenant_spread_over_256_partitions():
    """100,000 emails of one tenant land in 256 partitions, none holding more than 0.6 %."""
    # GIVEN the keys of 100,000 emails of one tenant, as sync computes them
    keys = [
        email_key(TENANT, f"<{uuid.uuid4()}@mail.example>", "connection", f"item-{i}")
        for i in range(100_000)
    ]

    # WHEN each is given its partition
    per_partition = Counter(email_partition(TENANT, key) for key in keys)

    # THEN all 256 shards are used, evenly, and all belong to the tenant alone
    assert len(per_partition) == 256
    assert max(per_partition.values()) < 100_000 * 0.006
    other = {email_partition(str(uuid.uuid4()), key) for key in keys[:100]}
    assert not other & set(per_partition)


def test_email_partition_is_the_same_for_every_copy_of_one_email():
    """Two mailboxes' copies of one email share a key, so they write one partition and row."""
    # GIVEN one internetMessageId synced from two connections
    first = email_key(TENANT, "<m1@customer.example>", "conn-a", "AAMk-A1")
    second = email_key(TENANT, "<m1@customer.example>", "conn-b", "AAMk-B7")

    # WHEN / THEN
    assert first == second
    assert email_partition(TENANT, first) == email_partition(TENANT, second)


def test_slot_claims_of_a_large_tenant_spread_below_the_partition_target():
    """A 100,000-connection fan-out claiming 10,000 a second keeps every shard under 2,000/s."""
    # GIVEN 100,000 connections of one tenant
    users = [str(uuid.uuid4()) for _ in range(100_000)]

    # WHEN each connection's claim is given its partition
    per_partition = Counter(slot_partition(connection(user)) for user in users)

    # THEN every shard is used and, at a fan-out rate of 10,000 claims a second, the busiest
    # shard takes well under the per-partition target
    assert len(per_partition) == SLOT_SHARDS
    busiest_share = max(per_partition.values()) / len(users)
    assert busiest_share * 10_000 < PARTITION_TARGET * 0.5


def test_slot_claim_is_stable_and_its_own_in_every_tenant():
    """A connection's claim keeps its shard and row, and no other tenant's connection shares it."""
    # GIVEN one user id in two tenants, and a fleet of 1,000 tenants of one user each
    user = str(uuid.uuid4())
    here, there = connection(user), connection(user, str(uuid.uuid4()))
    fleet = [connection("user-1", str(uuid.uuid4())) for _ in range(1_000)]

    # WHEN / THEN the shard is fixed by the connection, its row names the tenant, and the
    # same user id in many tenants still spreads over every shard
    assert slot_partition(here) == slot_partition(connection(user))
    assert here.key != there.key
    assert here.key.startswith(table_key(TENANT) + "|")
    assert len({slot_partition(c) for c in fleet}) == SLOT_SHARDS
