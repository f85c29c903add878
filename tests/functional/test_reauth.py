"""BR-08: every grant Microsoft refuses for good moves a connection to reauth_required, once."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from shared.adapters.queues import NOTIFICATIONS_QUEUE, decode_job
from tests.functional.conftest import Tenant
from tests.functional.test_mail_sync import message
from tests.functional.test_sync_resilience import (
    _job,
    connected,
    graph_calls,
    last_round,
    long_token,
    stored_ids,
)

pytestmark = pytest.mark.stack

REFUSALS = [
    pytest.param("invalid_grant", 65001, "invalid_grant:65001", id="65001-consent-withdrawn"),
    pytest.param("invalid_grant", 70008, "invalid_grant:70008", id="70008-expired"),
    pytest.param(
        "interaction_required", 50076, "interaction_required:50076", id="interaction-required"
    ),
]


def token_requests(tenant: Tenant) -> int:
    """How many token endpoint requests the simulator served so far."""
    seen = tenant.stack.sim.requests_seen()
    return sum(1 for r in seen if r.service == "identity" and r.path.endswith("/token"))


def reauth_log_lines(tenant: Tenant, upn: str) -> int:
    """How many times the host logged that this user's connection needs consent again."""
    text = (tenant.stack.workdir / "host.log").read_text("utf-8", "replace")
    user = f"user={tenant.users[upn]}"
    return sum(1 for line in text.splitlines() if "needs consent again" in line and user in line)


def notices(tenant: Tenant, upn: str) -> list[dict[str, Any]]:
    """The notices queued for the customer platform about this user, oldest first."""
    queue = QueueClient.from_connection_string(
        tenant.stack.env["AzureWebJobsStorage"], NOTIFICATIONS_QUEUE
    )
    jobs = [decode_job(base64.b64decode(m.content)) for m in queue.peek_messages(max_messages=32)]
    return [job for job in jobs if job.get("user") == tenant.users[upn]]


@pytest.mark.parametrize(("error", "number", "code"), REFUSALS)
def test_refused_grant_moves_to_reauth_required_once_and_stops_graph_calls(
    tenant: Tenant, error: str, number: int, code: str
) -> None:
    """The state changes in one round only; later rounds and jobs call nothing; data stays."""
    # GIVEN a synced mailbox whose refresh token Microsoft then refuses, past the cached
    # access token's hour
    upn = connected(tenant, "pia", "Acme", "acme.example")
    old = message("a@acme.example", [upn], "before", days_ago=1)
    tenant.stack.sim.load_messages(upn, "inbox", [old])
    tenant.sync()
    api = long_token(tenant, upn)
    tenant.stack.sim.revoke_refresh_tokens(upn, error_code=number, error=error)
    tenant.stack.sim.advance_time(3 * 3600)

    # WHEN a round runs
    tenant.sync()
    moved = last_round(tenant, upn, api)
    graph, tokens = graph_calls(tenant, upn), token_requests(tenant)

    # THEN the connection waits for consent with the refusal's code
    assert (moved["state"], moved["lastError"]) == ("reauth_required", code)
    assert moved["lastErrorAt"]
    assert moved["explanation"]["code"] == code

    # WHEN, a second later, two more rounds run and a job for the connection is delivered anyway
    time.sleep(1.1)
    tenant.sync()
    tenant.sync()
    tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
    tenant.stack.wait_idle()

    # THEN the state changed once: same code and time, one log line; no Graph or token request
    # was made, and the stored email stays
    after = last_round(tenant, upn, api)
    assert (after["state"], after["lastError"]) == ("reauth_required", code)
    assert after["lastErrorAt"] == moved["lastErrorAt"]
    assert reauth_log_lines(tenant, upn) == 1
    [notice] = notices(tenant, upn)
    assert notice["type"] == "connection.reauth_required"
    assert (notice["tenant"], notice["connection"], notice["code"]) == (
        tenant.tenant_id,
        "mail",
        code,
    )
    assert notice["summary"]
    assert notice["action"]
    assert upn not in str(notice)
    assert graph_calls(tenant, upn) == graph
    assert token_requests(tenant) == tokens
    assert stored_ids(tenant, "Acme") == [old["internetMessageId"]]

    # WHEN the user consents again and a new message arrives
    tenant.stack.connect_mail(api).raise_for_status()
    tenant.stack.sim.load_messages(upn, "inbox", [message("a@acme.example", [upn], "after")])
    tenant.sync()

    # THEN sync resumes from the stored cursor: only the new message is read
    resumed = last_round(tenant, upn, api)
    assert (resumed["state"], resumed["lastError"]) == ("active", None)
    assert resumed["lastRound"]["seen"] == 1
    assert len(stored_ids(tenant, "Acme")) == 2
