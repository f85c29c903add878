"""The backfill window: a first round reads only mail received within the tenant's backfillDays.

The worker asks Graph for ``$filter=receivedDateTime ge <start>``; the simulator applies it, and
the delta link it hands back keeps the filter for later rounds, as Exchange does.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional.conftest import Tenant
from tests.functional.test_mail_sync import message

pytestmark = pytest.mark.stack


def _set_backfill(tenant: Tenant, days: int | None) -> dict[str, Any]:
    """Replace the tenant's settings with ``days`` of backfill (``None`` leaves it out)."""
    body: dict[str, Any] = {"name": "Test tenant", "ownDomains": [tenant.domain]}
    if days is not None:
        body["backfillDays"] = days
    answer = tenant.stack.call("PUT", "admin/tenant", tenant.admin, json=body)
    answer.raise_for_status()
    return dict(answer.json())


def _connected(tenant: Tenant, alias: str) -> str:
    upn = tenant.add_user(alias)
    tenant.add_company("Acme", ["acme.example"])
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    return upn


def _last_round(tenant: Tenant, upn: str) -> dict[str, Any]:
    listed = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    return dict(listed[0]["lastRound"])


def _stored(tenant: Tenant) -> set[str]:
    return {e["internetMessageId"] for e in tenant.company_emails("Acme")}


def test_first_round_stores_mail_inside_the_window_only(tenant: Tenant) -> None:
    """With 30 days of backfill, mail of 1 and 29 days ago is stored, of 31 and 400 days is not."""
    # GIVEN a tenant with 30 days of backfill and a connected user whose inbox and sent items
    # hold customer mail from inside and outside the window
    _set_backfill(tenant, 30)
    upn = _connected(tenant, "ola")
    inside = [
        message("a@acme.example", [upn], "recent", days_ago=1),
        message("b@acme.example", [upn], "just inside", days_ago=29),
    ]
    outside = [
        message("c@acme.example", [upn], "just outside", days_ago=31),
        message("d@acme.example", [upn], "last year", days_ago=400),
    ]
    sent_old = message(upn, ["e@acme.example"], "old reply", days_ago=45)
    sent_new = message(upn, ["e@acme.example"], "new reply", days_ago=2)
    tenant.stack.sim.load_messages(upn, "inbox", [*inside, *outside])
    tenant.stack.sim.load_messages(upn, "sentitems", [sent_old, sent_new])

    # WHEN the first round runs
    tenant.sync()

    # THEN only the mail inside the window is stored; the older mail was never even read
    expected = {m["internetMessageId"] for m in [*inside, sent_new]}
    assert _stored(tenant) == expected
    last = _last_round(tenant, upn)
    assert last["seen"] == 3
    assert last["kept"] == 3
    assert last["dropped"] == {}


def test_later_rounds_keep_the_window(tenant: Tenant) -> None:
    """An old message that appears after the first round stays out; a new one is stored."""
    # GIVEN a tenant with 30 days of backfill whose first round has run
    _set_backfill(tenant, 30)
    upn = _connected(tenant, "pia")
    first = message("a@acme.example", [upn], "first", days_ago=3)
    tenant.stack.sim.load_messages(upn, "inbox", [first])
    tenant.sync()

    # WHEN a new message and one received 90 days ago (restored from an archive) arrive,
    # and the next round runs
    new = message("b@acme.example", [upn], "new", days_ago=0.01)
    restored = message("c@acme.example", [upn], "restored", days_ago=90)
    tenant.stack.sim.load_messages(upn, "inbox", [new, restored])
    tenant.sync()

    # THEN the new message is stored and the old one is not
    assert _stored(tenant) == {first["internetMessageId"], new["internetMessageId"]}
    assert _last_round(tenant, upn)["seen"] == 1


def test_default_window_is_360_days(tenant: Tenant) -> None:
    """A tenant set up without backfillDays gets 360: mail of 359 days is stored, of 361 not."""
    # GIVEN a tenant whose settings leave backfillDays out, and a connected user with mail
    # either side of 360 days
    settings = _set_backfill(tenant, None)
    upn = _connected(tenant, "quin")
    inside = message("a@acme.example", [upn], "inside", days_ago=359)
    outside = message("b@acme.example", [upn], "outside", days_ago=361)
    tenant.stack.sim.load_messages(upn, "inbox", [inside, outside])

    # WHEN the first round runs
    tenant.sync()

    # THEN the default is 360 days and only the mail inside it is stored
    assert settings["backfillDays"] == 360
    assert _stored(tenant) == {inside["internetMessageId"]}
    assert _last_round(tenant, upn)["seen"] == 1
