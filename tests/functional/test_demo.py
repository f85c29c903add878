"""The demo, end to end on a stack of its own: small real-mail folders and the generated mail.

The demo's timer run fans out every tenant of its stack, so each test starts a fresh one rather
than sharing the session's; a run takes about ten seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import pytest

from devstack.demo import TENANT_DOMAIN, USERS, main, print_report, run_demo
from devstack.mailgen import demo_companies
from devstack.stack import LocalStack

pytestmark = pytest.mark.stack

ALEX, MEGAN = (f"{alias}@{TENANT_DOMAIN}" for alias, _name in USERS)


@pytest.fixture
def demo_stack(tmp_path: Path) -> Iterator[LocalStack]:
    """A stack for one demo run only."""
    local = LocalStack(tmp_path / "stack").start()
    yield local
    local.stop()


def _eml(folder: Path, name: str, sender: str, to: str, subject: str, *, days_ago: int) -> str:
    """Write one RFC 5322 message; return its Message-ID."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC) - timedelta(days=days_ago))
    message["Message-ID"] = make_msgid(domain="mail.example")
    message.set_content(f"{subject}\n")
    (folder / name).write_bytes(bytes(message))
    return str(message["Message-ID"])


def _mail_folder(folder: Path) -> dict[str, set[str]]:
    """A small corpus of customer, internal, localhost and unreadable mail; customer ids."""
    folder.mkdir()
    acme = {
        _eml(folder, f"a{i}.eml", "ann@acme.example", ALEX, f"order {i}", days_ago=i + 1)
        for i in range(3)
    }
    globex = {
        _eml(folder, f"g{i}", "gil@globex.example", MEGAN, f"quote {i}", days_ago=2)
        for i in range(2)
    }
    # Internal mail is the most frequent sender domain here, then a host that is no domain:
    # neither may become a company, or the admin API would refuse the whole import.
    for i in range(5):
        _eml(folder, f"i{i}.eml", MEGAN, ALEX, f"lunch {i}", days_ago=3)
    for i in range(4):
        _eml(folder, f"r{i}.eml", "root@localhost", ALEX, f"cron {i}", days_ago=1)
    (folder / "broken.eml").write_bytes(b"\x00\x01 not a message at all\n")
    return {"acme.example": acme, "globex.example": globex}


def test_demo_on_a_small_mail_folder_stores_the_customer_mail(
    demo_stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The MAIL path picks customer domains only, stores their mail, and reports the counts."""
    # GIVEN a folder of 14 readable messages (5 customer, 5 internal, 4 from localhost) and
    # one file that is not mail
    customers = _mail_folder(tmp_path / "mail")

    # WHEN the demo runs on it and prints its report
    report = run_demo(demo_stack, mail=tmp_path / "mail", companies_file=None)
    print_report(report)

    # THEN only the two customer domains became companies, each holding exactly its mail
    held = {c["name"]: set(c["internetMessageIds"]) for c in report["companies"]}
    assert held == customers
    # AND every readable message was seen, the customer ones kept, the rest dropped as internal
    assert (report["loaded"], report["unreadableFiles"], report["seen"]) == (14, 1, 14)
    assert (report["kept"], report["storedEmails"]) == (5, 5)
    # (an address at a host that is no domain is no participant, so cron mail is internal too)
    assert report["dropped"] == {"internal_only": 9}
    # AND the printed summary says so, and the report can be written as JSON
    printed = capsys.readouterr().out
    assert "loaded into mailboxes: 14 messages (1 files unreadable)" in printed
    assert "kept:                  5  (stored as 5 distinct emails)" in printed
    assert "dropped, internal_only:" in printed
    assert json.loads(json.dumps(report))["storedEmails"] == 5


def test_demo_on_generated_mail_reports_consistent_counts(
    demo_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default demo syncs the generated mailboxes; its counts add up and its list is sorted."""
    # GIVEN the demo's generated mailboxes and companies

    # WHEN the demo runs and prints its report
    report = run_demo(demo_stack, mail=None, companies_file=None)
    print_report(report)

    # THEN every loaded message was seen and either kept or dropped for a reason
    assert report["seen"] == report["loaded"] > 0
    assert report["seen"] == report["kept"] + sum(report["dropped"].values())
    assert {"internal_only", "no_customer"} <= set(report["dropped"])
    # AND each demo company holds mail, and the stored count is the distinct set of them
    companies: list[dict[str, Any]] = report["companies"]
    assert {c["name"] for c in companies} == {c["name"] for c in demo_companies()}
    assert all(c["emails"] > 0 for c in companies)
    distinct = {i for c in companies for i in c["internetMessageIds"]}
    assert report["storedEmails"] == len(distinct) <= report["kept"]
    # AND the latest emails are listed newest received first, as printed
    shown = next(c for c in companies if c["emails"])
    received = [e["receivedDateTime"] for e in shown["latest"]]
    assert received == sorted(received, reverse=True)
    printed = capsys.readouterr().out
    assert f"latest emails of {shown['name']} (read API, newest received first):" in printed
    assert received[0][:16] in printed


def test_demo_companies_file_replaces_the_picked_ones_and_the_report_file_lists_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """COMPANIES=FILE sets the companies; REPORT=FILE lists each stored email's id per company."""
    # GIVEN the small mail folder and a companies file naming Globex by domain and Acme's sender
    # only as a contact of a company whose own domain sends nothing
    customers = _mail_folder(tmp_path / "mail")
    companies = [
        {"name": "Globex Corp", "domains": ["globex.example"]},
        {"name": "Ann's firm", "domains": ["annsfirm.example"], "contacts": ["ann@acme.example"]},
    ]
    (tmp_path / "companies.json").write_text(json.dumps(companies), "utf-8")
    report_path = tmp_path / "report.json"

    # WHEN the demo runs as make demo MAIL=... COMPANIES=... REPORT=... runs it, on its own stack
    code = main(
        [
            "--mail",
            str(tmp_path / "mail"),
            "--companies",
            str(tmp_path / "companies.json"),
            "--report",
            str(report_path),
            "--stack-dir",
            str(tmp_path / "stack"),
        ]
    )

    # THEN the file's companies replaced the picked sender domains, and the written report
    # lists, per company, the internetMessageId of every email stored for it
    assert code == 0
    report = json.loads(report_path.read_text("utf-8"))
    held = {c["name"]: sorted(c["internetMessageIds"]) for c in report["companies"]}
    assert held == {
        "Globex Corp": sorted(customers["globex.example"]),
        "Ann's firm": sorted(customers["acme.example"]),
    }
    assert [c["emails"] for c in report["companies"]] == [
        len(c["internetMessageIds"]) for c in report["companies"]
    ]
    assert report["storedEmails"] == 5
    assert f"report written to {report_path}" in capsys.readouterr().out
