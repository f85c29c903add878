"""Unit tests for devstack.demo: reading a real-mail folder and picking companies from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devstack.demo import TENANT_DOMAIN, _clip, _content, pick_companies, read_mail

MESSAGE = b"From: a@acme.example\r\nTo: alex@contoso.example\r\nSubject: x\r\n\r\nHi.\r\n"
UNREADABLE = Path("/proc/self/mem")  # a regular file whose read fails with EIO


def _from(address: str) -> dict[str, Any]:
    return {"from": {"emailAddress": {"address": address, "name": ""}}}


@pytest.mark.skipif(not UNREADABLE.is_file(), reason="needs Linux's /proc/self/mem")
def test_read_mail_counts_a_file_it_cannot_read_and_reads_the_rest(tmp_path: Path) -> None:
    """A file that fails to read is counted as unreadable; the files after it still load."""
    # GIVEN a folder whose first file cannot be read, then a message and a file of junk
    (tmp_path / "a.eml").symlink_to(UNREADABLE)
    (tmp_path / "b.eml").write_bytes(MESSAGE)
    (tmp_path / "c.eml").write_bytes(b"\x00\x01 junk\n")

    # WHEN the demo reads it
    messages, failures = read_mail(tmp_path)

    # THEN the message loaded and both other files count as unreadable
    assert [m["subject"] for m in messages] == ["x"]
    assert failures == 2


def test_pick_companies_leaves_out_own_and_invalid_domains() -> None:
    """Senders at the tenant's domains or at hosts that are no domain never become companies."""
    # GIVEN senders at the tenant's domain and a subdomain of it, at localhost, at an address
    # literal, and at customer domains in two spellings
    senders = [
        *[f"u{i}@{TENANT_DOMAIN}" for i in range(5)],
        *[f"u{i}@eu.{TENANT_DOMAIN.upper()}" for i in range(4)],
        *["root@localhost"] * 4,
        *["x@[192.0.2.1]"] * 4,
        *["a@Bücher.example", "b@xn--bcher-kva.example", "c@bücher.example"],
        *["d@acme.example"] * 2,
        "no address",
    ]

    # WHEN companies are picked
    picked = pick_companies([_from(s) for s in senders])

    # THEN only the customer domains are, most frequent first, one per domain as first spelt
    assert picked == [
        {"name": "bücher.example", "domains": ["bücher.example"]},
        {"name": "acme.example", "domains": ["acme.example"]},
    ]


@pytest.mark.parametrize(
    "contacts",
    [
        ["pat@initech.example"],
        ["Pat Lee <pat@initech.example>"],
        [{"email": "pat@initech.example"}],
        [{"email": "pat@initech.example", "name": "Pat Lee"}],
    ],
    ids=["address", "address-with-name", "email-only", "email-and-name"],
)
def test_content_takes_a_companies_file_with_contacts_in_every_form_the_api_takes(
    tmp_path: Path, contacts: list[object]
) -> None:
    """make demo COMPANIES=file: contacts as addresses or objects without a name all work."""
    # GIVEN a companies file with one company whose contact is written in one accepted form
    path = tmp_path / "companies.json"
    company = {"name": "Initech", "domains": ["initech.example"], "contacts": contacts}
    path.write_text(json.dumps([company]), "utf-8")

    # WHEN the demo builds its mailboxes from it
    mailboxes, companies, failures = _content(
        None, path, ["a@contoso.example", "b@contoso.example"]
    )

    # THEN mail was generated with that contact, and the companies go to the API as written
    assert failures == 0
    senders = {
        m["from"]["emailAddress"]["address"].lower()
        for box in mailboxes.values()
        for _folder, m in box
        if m.get("from")
    }
    assert "pat@initech.example" in senders
    assert companies == [company]


def test_report_columns_mark_cut_text_with_an_ellipsis() -> None:
    """A sender too wide for its column ends in an ellipsis, so a cut domain never reads whole."""
    # GIVEN / WHEN
    cut = _clip("priya.ivanova@initech.example.com", 28)

    # THEN
    assert cut == "priya.ivanova@initech.examp\u2026"
    assert len(cut) == 28
    assert _clip("ann@initech.example", 28) == "ann@initech.example"
