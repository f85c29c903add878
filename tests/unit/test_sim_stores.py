"""Unit tests of the simulator's vault store, fault rules, grants and delta cursors."""

from __future__ import annotations

import pytest

from devstack.simulator.delta import BadTokenError, Cursor
from devstack.simulator.entra import split_scopes
from devstack.simulator.faults import FaultBook, FaultRule
from devstack.simulator.vaultstore import VaultError, VaultStore


def test_vaultstore_rejects_invalid_names():
    """Names outside 1-127 of 0-9 a-z A-Z - are refused with BadParameter."""
    # GIVEN a store
    store = VaultStore()

    # WHEN / THEN bad names raise
    for name in ("has_underscore", "dot.name", "", "x" * 128):
        with pytest.raises(VaultError) as error:
            store.set(name, "v", 0)
        assert error.value.code == "BadParameter"


def test_vaultstore_soft_delete_blocks_reuse_until_purge():
    """A soft-deleted name answers 409 ObjectIsDeletedButRecoverable until purged."""
    # GIVEN a deleted secret
    store = VaultStore()
    store.set("Name", "v", 0)
    store.delete("name", 1)

    # WHEN the name is set again
    with pytest.raises(VaultError) as conflict:
        store.set("NAME", "w", 2)

    # THEN it conflicts, and works after purge
    assert conflict.value.status == 409
    assert conflict.value.inner == "ObjectIsDeletedButRecoverable"
    store.purge("name")
    assert store.set("name", "w", 3)[1].value == "w"


def test_faultbook_matches_user_and_counts_down():
    """A rule for one user answers only that user's requests, count times."""
    # GIVEN a rule for alice with count 1
    book = FaultBook()
    book.add(FaultRule(path=r"/delta$", status=503, user="Alice@Contoso.test", count=1))

    # WHEN requests from bob and alice arrive
    bob = book.take("graph", "GET", "/x/delta", ("oid-b", "bob@contoso.test"))
    alice = book.take("graph", "GET", "/x/delta", ("oid-a", "alice@contoso.test"))
    again = book.take("graph", "GET", "/x/delta", ("oid-a", "alice@contoso.test"))

    # THEN only alice's first request is hit
    assert bob is None
    assert alice is not None
    assert alice.status == 503
    assert again is None


def test_faultbook_forever_rule_and_method_filter():
    """A rule with count None keeps matching, and a method filter applies."""
    # GIVEN a rule for POSTs only, forever
    book = FaultBook()
    book.add(FaultRule(path="/token", status=400, method="POST", count=None))

    # WHEN / THEN
    assert book.take("identity", "GET", "/t/token", ()) is None
    assert all(book.take("identity", "POST", "/t/token", ()) for _ in range(5))


def test_cursor_round_trips_and_rejects_garbage():
    """A delta cursor survives encoding, and a tampered token is refused."""
    # GIVEN a cursor with query options
    cursor = Cursor(
        "oid",
        "folder/+=",
        0,
        3,
        9,
        initial=True,
        select=["subject"],
        filter_op="ge",
        filter_value="2024-01-01T00:00:00Z",
    )

    # WHEN it is encoded and decoded
    token = cursor.encode()

    # THEN it is URL-safe and equal after the round trip; garbage is refused
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert Cursor.decode(token) == cursor
    with pytest.raises(BadTokenError):
        Cursor.decode("not-a-token")


def test_split_scopes_separates_graph_and_oidc_scopes():
    """Graph permissions lose their resource prefix; OIDC scopes are set apart."""
    # GIVEN / WHEN
    graph, reserved = split_scopes("https://graph.microsoft.com/Mail.Read offline_access openid")

    # THEN
    assert graph == ("Mail.Read",)
    assert reserved == ("offline_access", "openid")
    with pytest.raises(ValueError, match="not a Microsoft Graph permission"):
        split_scopes("api://other/access")
