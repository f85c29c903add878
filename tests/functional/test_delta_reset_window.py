"""BR-01: a reset after Graph forgot a cursor reads back to where the last round read."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.functional.conftest import Tenant
from tests.functional.test_calendar_sync import _worker_at, at, meeting
from tests.functional.test_calendar_sync import connected as calendar_connected
from tests.functional.test_mail_sync import message
from tests.functional.test_sync_resilience import connected, last_round, stored_ids

pytestmark = pytest.mark.stack


def arriving_now(upn: str, subject: str) -> dict[str, Any]:
    """A customer mail the mailbox receives this second."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return message("a@acme.example", [upn], subject, sentDateTime=stamp, receivedDateTime=stamp)


def zero_backfill(tenant: Tenant) -> None:
    """Make the tenant sync only mail received from now on."""
    body = {"name": "Test tenant", "ownDomains": [tenant.domain], "backfillDays": 0}
    tenant.stack.call("PUT", "admin/tenant", tenant.admin, json=body).raise_for_status()


def test_reset_with_zero_backfill_keeps_mail_received_since_the_last_round(
    tenant: Tenant,
) -> None:
    """Mail received between two rounds is stored although the second round had to reset."""
    # GIVEN a tenant syncing no history, and one mail stored by a normal round
    zero_backfill(tenant)
    upn = connected(tenant, "zed", "Acme", "acme.example")
    tenant.sync()
    time.sleep(2)
    first = arriving_now(upn, "arrives normally")
    tenant.stack.sim.load_messages(upn, "inbox", [first])
    tenant.sync()
    assert stored_ids(tenant, "Acme") == [first["internetMessageId"]]

    # WHEN another mail arrives and Graph then forgets the mailbox's delta tokens
    time.sleep(2)
    second = arriving_now(upn, "arrives before the reset")
    tenant.stack.sim.load_messages(upn, "inbox", [second])
    time.sleep(2)
    tenant.stack.sim.invalidate_delta_tokens(upn)
    tenant.sync()

    # THEN the reset round stores the new mail, keeps the first once and leaves no error
    ids = stored_ids(tenant, "Acme")
    assert sorted(ids) == sorted([first["internetMessageId"], second["internetMessageId"]])
    state = last_round(tenant, upn)
    assert (state["state"], state["lastError"]) == ("active", None)


def test_calendar_reset_after_the_window_moved_reads_the_window_it_lost(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change to a meeting the lost window covered is read, though today's window starts later."""
    # GIVEN a tenant syncing no history, and a meeting tomorrow synced with today's window
    zero_backfill(tenant)
    tenant.add_company("Acme", ["acme.example"])
    upn = calendar_connected(tenant, "kai")
    event_id = tenant.stack.sim.add_event(upn, meeting("Review", upn, ["c@acme.example"], at(1)))
    tenant.sync()
    assert [e["subject"] for e in tenant.company_events("Acme")] == ["Review"]

    # WHEN the meeting is renamed, Graph forgets the calendar's sync state, and a round runs
    # three days later, when the window wanted starts after the meeting
    tenant.stack.sim.update_event(upn, event_id, {"subject": "Review, renamed"})
    tenant.stack.sim.invalidate_calendar_sync_state(upn)
    worker = _worker_at(tenant, datetime.now(UTC) + timedelta(days=3), monkeypatch)
    stats = worker.run({"kind": "calendar", "tenant": tenant.tenant_id, "user": tenant.users[upn]})

    # THEN the full round covered the lost window and stored the change, once
    assert stats is not None
    assert stats.full_round is True
    assert [e["subject"] for e in tenant.company_events("Acme")] == ["Review, renamed"]
