"""Unit tests for devstack.mailgen: seeded, realistic generated mailboxes."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.mailgen import demo_companies, generate_mailboxes

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
TENANT = "contoso.example"
USERS = [
    ("adele@contoso.example", "Adele Vance"),
    ("alex@contoso.example", "Alex Wilber"),
    ("megan@contoso.example", "Megan Bowen"),
]
Mailboxes = dict[str, list[tuple[str, dict[str, Any]]]]


def generate(seed: int = 11, **overrides: Any) -> Mailboxes:
    arguments: dict[str, Any] = {
        "seed": seed,
        "tenant_domain": TENANT,
        "users": USERS,
        "companies": demo_companies(),
        "now": NOW,
    }
    return generate_mailboxes(**(arguments | overrides))


@pytest.fixture(scope="module")
def boxes() -> Mailboxes:
    """One generated tenant, shared by the read-only tests of this module."""
    return generate()


def messages(boxes: Mailboxes) -> list[dict[str, Any]]:
    return [message for box in boxes.values() for _, message in box]


def header(message: dict[str, Any], name: str) -> str | None:
    found = [h["value"] for h in message["internetMessageHeaders"] if h["name"] == name]
    return found[0] if found else None


def participants(message: dict[str, Any]) -> list[dict[str, str]]:
    fields = ("toRecipients", "ccRecipients", "bccRecipients")
    return [message["from"]["emailAddress"]] + [
        r["emailAddress"] for field in fields for r in message[field]
    ]


def test_demo_companies_is_deterministic_with_required_shapes() -> None:
    """Companies repeat per seed, with an IDN domain, subdomain mail and a free-mail contact."""
    # GIVEN the default seed
    # WHEN the companies are generated twice
    companies, again = demo_companies(), demo_companies()

    # THEN they are equal and carry each awkward case
    assert companies == again
    assert len(companies) == 6
    domains = [d for c in companies for d in c["domains"]]
    emails = [contact["email"] for c in companies for contact in c["contacts"]]
    assert all(d.endswith(".example") for d in domains)
    assert "bücher.example" in domains
    assert any(e.split("@")[1].startswith(("eu.", "us.")) for e in emails)
    assert any(e.endswith("@gmail.example") for e in emails)
    assert any("," in contact["name"] for c in companies for contact in c["contacts"])


def test_demo_companies_rejects_an_impossible_count() -> None:
    """Asking for more companies than the pool holds is a programmer error."""
    # GIVEN / WHEN / THEN a count of zero or too many raises
    with pytest.raises(ValueError, match="count must be between"):
        demo_companies(count=0)
    with pytest.raises(ValueError, match="count must be between"):
        demo_companies(count=99)


def test_generate_mailboxes_is_deterministic_per_seed(boxes: Mailboxes) -> None:
    """The same seed and now give identical mailboxes; another seed gives different ones."""
    # GIVEN the module's mailboxes for seed 11
    # WHEN the generator runs again with the same and with another seed
    same, other = generate(11), generate(12)

    # THEN only the other seed changes the content
    assert json.dumps(same, sort_keys=True) == json.dumps(boxes, sort_keys=True)
    assert json.dumps(other, sort_keys=True) != json.dumps(boxes, sort_keys=True)


def test_generate_mailboxes_produces_graph_shaped_messages(boxes: Mailboxes) -> None:
    """Every mailbox uses well-known folders and holds id-less Graph messages within the window."""
    # GIVEN the generated mailboxes
    # WHEN every item is inspected
    items = [(folder, message) for box in boxes.values() for folder, message in box]

    # THEN each is an inbox or sent item, has no id and is dated inside the window
    assert set(boxes) == {upn for upn, _ in USERS}
    assert {folder for folder, _ in items} == {"inbox", "sentitems"}
    oldest = (NOW - timedelta(days=91)).isoformat().replace("+00:00", "Z")
    for _, message in items:
        assert "id" not in message
        assert oldest <= message["sentDateTime"] <= message["receivedDateTime"]
        assert message["body"]["contentType"] == "html"
        json.dumps(message)


def test_generate_mailboxes_shares_one_message_between_two_users(boxes: Mailboxes) -> None:
    """A mail to a customer with a colleague in copy is a Sent Items copy plus an Inbox copy."""
    # GIVEN the folders in which each internetMessageId occurs, per user
    holders: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for upn, box in boxes.items():
        for folder, message in box:
            if "internetMessageId" in message:
                holders[message["internetMessageId"]].add((upn, folder))

    # WHEN looking for ids held by two users, one in Sent Items and one in the Inbox
    shared = [
        places
        for places in holders.values()
        if len({upn for upn, _ in places}) > 1 and {f for _, f in places} == {"inbox", "sentitems"}
    ]

    # THEN such messages exist, and every multi-user id is at most once per user
    assert shared
    for places in holders.values():
        assert len({upn for upn, _ in places}) == len(places)


def test_generate_mailboxes_keeps_threads_consistent(boxes: Mailboxes) -> None:
    """Every In-Reply-To points at a generated message of the same conversation."""
    # GIVEN all messages by internetMessageId
    by_id = {m["internetMessageId"]: m for m in messages(boxes) if "internetMessageId" in m}

    # WHEN the replies are followed to their parents
    replies = [m for m in messages(boxes) if header(m, "In-Reply-To")]

    # THEN each parent exists, shares the conversation and is listed last in References
    assert len(replies) > 20
    for reply in replies:
        parent = by_id[header(reply, "In-Reply-To") or ""]
        assert parent["conversationId"] == reply["conversationId"]
        assert (header(reply, "References") or "").split()[-1] == parent["internetMessageId"]


def test_generate_mailboxes_includes_each_kind_of_mail(boxes: Mailboxes) -> None:
    """Newsletters, auto-replies, internal, private and id-less mail all occur."""
    # GIVEN every generated message
    everything = messages(boxes)

    # WHEN they are classified by their headers and participants
    bulk = [m for m in everything if header(m, "List-Id") and header(m, "Precedence") == "bulk"]
    auto = [m for m in everything if header(m, "Auto-Submitted") == "auto-replied"]
    internal = [
        m for m in everything if all(p["address"].endswith("@" + TENANT) for p in participants(m))
    ]
    domains = {p["address"].rpartition("@")[2] for m in everything for p in participants(m)}

    # THEN each kind is present
    assert bulk
    assert auto
    assert all(m["subject"].startswith("Automatic reply: ") for m in auto)
    assert internal
    assert {"weber-legal.example", "gmail.example"} <= domains
    assert any("internetMessageId" not in m for m in everything)


def test_generate_mailboxes_includes_awkward_addresses(boxes: Mailboxes) -> None:
    """Comma and non-ASCII names, encoded commas, upper case and both IDN forms appear."""
    # GIVEN every participant and every raw address header
    people = [p for m in messages(boxes) for p in participants(m)]
    raw = [
        h["value"]
        for m in messages(boxes)
        for h in m["internetMessageHeaders"]
        if h["name"] in ("From", "To", "Cc")
    ]

    # WHEN the names and addresses are inspected
    names = {p["name"] for p in people}
    addresses = {p["address"] for p in people}

    # THEN each awkward form occurs at least once
    assert any("," in name for name in names)
    assert any(not name.isascii() for name in names)
    assert any("=2C" in value for value in raw)
    assert any(address != address.lower() for address in addresses)
    assert any(address.endswith("@bücher.example") for address in addresses)
    assert any(address.endswith("@xn--bcher-kva.example") for address in addresses)


def test_generate_mailboxes_includes_mail_older_than_sixty_days(boxes: Mailboxes) -> None:
    """Some mail falls outside a 60-day window and some inside it."""
    # GIVEN the 60-day boundary
    boundary = (NOW - timedelta(days=60)).isoformat().replace("+00:00", "Z")

    # WHEN the received times are compared with it
    times = [m["receivedDateTime"] for m in messages(boxes)]

    # THEN both sides are populated
    assert any(t < boundary for t in times)
    assert any(t >= boundary for t in times)


def test_generate_mailboxes_keeps_bcc_only_in_sent_items(boxes: Mailboxes) -> None:
    """A Bcc'd colleague's Inbox copy hides the Bcc line that the sender's copy keeps."""
    # GIVEN the sent items that name a Bcc recipient
    sent = [
        m for _, box in boxes.items() for f, m in box if f == "sentitems" and m["bccRecipients"]
    ]

    # WHEN the colleague's copy of each is found
    inbox = {
        m.get("internetMessageId"): m for box in boxes.values() for f, m in box if f == "inbox"
    }

    # THEN it exists without Bcc recipients
    assert sent
    for message in sent:
        assert inbox[message["internetMessageId"]]["bccRecipients"] == []


def test_generate_mailboxes_works_for_a_single_user() -> None:
    """With one user, colleague threads fall back to customer mail and nothing breaks."""
    # GIVEN one user
    # WHEN mailboxes are generated for a few threads
    boxes = generate(3, users=USERS[:1], threads_per_user=12)

    # THEN only that user's mailbox exists and no message names another tenant user
    assert list(boxes) == [USERS[0][0]]
    others = {upn for upn, _ in USERS[1:]}
    assert not any(p["address"] in others for m in messages(boxes) for p in participants(m))


def test_generate_mailboxes_rejects_naive_now() -> None:
    """A naive ``now`` is refused because every stored time is UTC."""
    # GIVEN / WHEN / THEN a naive datetime raises
    with pytest.raises(ValueError, match="timezone-aware"):
        generate(now=datetime(2026, 5, 1))  # noqa: DTZ001


def test_generate_mailboxes_invents_contacts_for_domain_only_companies() -> None:
    """A company given only by its domains still gets customer mail, from invented contacts."""
    # GIVEN one company without contacts
    companies = [{"name": "Fabrikam", "domains": ["fabrikam.example"]}]

    # WHEN mailboxes are generated
    boxes = generate(4, companies=companies, threads_per_user=10)

    # THEN customer mail comes from that company's domain
    domains = {
        p["address"].rpartition("@")[2].lower() for m in messages(boxes) for p in participants(m)
    }
    assert "fabrikam.example" in domains


def test_generate_mailboxes_rejects_companies_without_domains_or_contacts() -> None:
    """Without any customer to write to, the generator refuses to run."""
    # GIVEN / WHEN / THEN an empty company list raises
    with pytest.raises(ValueError, match="at least one domain or contact"):
        generate(companies=[])
