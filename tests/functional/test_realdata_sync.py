"""Sync real mail (the SpamAssassin corpus) and compare with what the raw headers say."""

from __future__ import annotations

import email
import email.policy
import email.utils
from collections import defaultdict
from pathlib import Path

import pytest

from devstack.mailload import graph_message_from_eml, iter_mail_files
from tests.functional.conftest import Tenant

pytestmark = [pytest.mark.stack, pytest.mark.realdata]

OWN_DOMAIN = "taint.org"
COMPANIES = {
    "SourceForge": "sourceforge.net",
    "Linux Ireland": "linux.ie",
    "FreshRPMs": "freshrpms.net",
    "Xent": "xent.com",
    "SecurityFocus": "securityfocus.com",
}
PARTICIPANT_HEADERS = ("From", "Sender", "To", "Cc", "Bcc")


def expected_by_company(raw_messages: list[bytes]) -> dict[str, set[str]]:
    """Which Message-IDs each company should hold, computed from raw headers alone."""
    expected: dict[str, set[str]] = defaultdict(set)
    for raw in raw_messages:
        parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
        values = [str(v) for name in PARTICIPANT_HEADERS for v in parsed.get_all(name) or []]
        domains = {
            addr.rsplit("@", 1)[1].strip().lower().rstrip(".")
            for _name, addr in email.utils.getaddresses(values)
            if "@" in addr
        }
        customer = {d for d in domains if not _under(d, OWN_DOMAIN)}
        for company, domain in COMPANIES.items():
            if any(_under(d, domain) for d in customer):
                expected[company].add(str(parsed["Message-ID"]).strip())
    return expected


def _under(domain: str, parent: str) -> bool:
    return domain == parent or domain.endswith("." + parent)


def test_sync_of_spamassassin_corpus_matches_raw_headers(tenant: Tenant, realdata: Path) -> None:
    """Every company holds exactly the messages whose raw participants are at its domains."""
    # GIVEN the SpamAssassin corpus split between two mailboxes, and five companies
    corpus = [raw for _path, raw in iter_mail_files(realdata / "mail" / "spamassassin")]
    admin_body = {"name": "Taint", "ownDomains": [OWN_DOMAIN], "backfillDays": 36500}
    tenant.stack.call("PUT", "admin/tenant", tenant.admin, json=admin_body).raise_for_status()
    users = [tenant.add_user("jm"), tenant.add_user("yyyy")]
    for name, domain in COMPANIES.items():
        tenant.add_company(name, [domain])
    for upn in users:
        tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    for index, raw in enumerate(corpus):
        tenant.stack.sim.load_messages(users[index % 2], "inbox", [graph_message_from_eml(raw)])

    # WHEN one sync round runs
    tenant.sync()

    # THEN each company's stored Message-IDs equal the independently computed set
    expected = expected_by_company(corpus)
    assert sum(len(ids) for ids in expected.values()) > 50
    for company in COMPANIES:
        stored = [e["internetMessageId"] for e in tenant.company_emails(company)]
        assert len(stored) == len(set(stored)), company
        assert set(stored) == expected[company], company
