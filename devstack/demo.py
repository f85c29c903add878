"""``make demo``: the main job end to end on the local stack, with a report.

It starts Azurite, the Microsoft 365 simulator and the local Functions host; an admin sets up
a tenant with two users and several companies through the product's API; both users consent
through the real MSAL flow; their mailboxes are loaded into the simulator; one sync round runs
through the timer's fan-out and the queue workers; and the report says what was seen, kept per
company, dropped per reason and stored, then lists one company's emails through the read API.

By default the mailboxes are generated (seeded, realistic). ``--mail DIR`` loads real
``.eml``/mbox files instead, split between the two users by recipient, with companies picked
from the sender domains found there; ``--companies FILE`` replaces the companies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from devstack.mailgen import demo_companies, generate_mailboxes
from devstack.mailload import graph_message_from_eml, iter_mail_files
from devstack.stack import ROOT, LocalStack
from shared.errors import ValidationError
from shared.matching.addresses import normalize_domain

TENANT_DOMAIN = "contoso.example"
USERS = (("alex.wilber", "Alex Wilber"), ("megan.bowen", "Megan Bowen"))
PICKED_COMPANIES = 8


def main(argv: list[str] | None = None) -> int:
    """Run the demo and print its report."""
    args = _parse(argv)
    stack = LocalStack(args.stack_dir)
    print("starting Azurite, the Microsoft 365 simulator and the functions host ...")
    stack.start()
    try:
        report = run_demo(stack, mail=args.mail, companies_file=args.companies)
    finally:
        stack.stop()
    print_report(report)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2, ensure_ascii=False), "utf-8")
        print(f"\nreport written to {args.report}")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.demo", description=__doc__)
    parser.add_argument("--mail", type=Path, help="a folder of .eml or mbox files to load")
    parser.add_argument("--companies", type=Path, help="a JSON list of companies")
    parser.add_argument("--report", type=Path, help="also write the report as JSON here")
    parser.add_argument(
        "--stack-dir",
        type=Path,
        default=ROOT / ".stack" / "demo",
        help="where the stack keeps its files and logs (default .stack/demo)",
    )
    return parser.parse_args(argv)


def run_demo(
    stack: LocalStack, *, mail: Path | None, companies_file: Path | None
) -> dict[str, Any]:
    """Set up, connect, load, sync and measure; return the report as a dict."""
    tenant_id = str(uuid.uuid4())
    users = [(f"{alias}@{TENANT_DOMAIN}", name, str(uuid.uuid4())) for alias, name in USERS]
    mailboxes, companies, failures = _content(mail, companies_file, [u[0] for u in users])
    admin = stack.token(
        tenant_id, str(uuid.uuid4()), roles=("Admin",), upn=f"admin@{TENANT_DOMAIN}"
    )
    # Real corpora are often years old: sync all their history, not the default 360 days.
    backfill = 360 if mail is None else 36_500
    _setup_tenant(stack, admin, users, companies, backfill_days=backfill)
    for upn, name, oid in users:
        stack.sim.add_user(tenant_id, upn, display_name=name, oid=oid)
        callback = stack.connect_mail(stack.token(tenant_id, oid, upn=upn))
        callback.raise_for_status()
    loaded = {upn: _load(stack, upn, mailboxes.get(upn, [])) for upn, _, _ in users}
    started = time.monotonic()
    stack.run_function("sync_fanout")
    stack.wait_idle(queues=("sync-fanout", "mail-sync"))
    elapsed = time.monotonic() - started
    return _report(
        stack,
        tenant_id,
        admin=admin,
        users=users,
        loaded=loaded,
        elapsed=elapsed,
        failures=failures,
    )


def _content(
    mail: Path | None, companies_file: Path | None, upns: list[str]
) -> tuple[dict[str, list[tuple[str, dict[str, Any]]]], list[dict[str, Any]], int]:
    if mail is None:
        companies = _read_companies(companies_file) if companies_file else demo_companies()
        users = [(upn, upn.split("@")[0]) for upn in upns]
        boxes = generate_mailboxes(
            seed=7, tenant_domain=TENANT_DOMAIN, users=users, companies=companies
        )
        return boxes, companies, 0
    messages, failures = read_mail(mail)
    split: dict[str, list[tuple[str, dict[str, Any]]]] = {upn: [] for upn in upns}
    for message in messages:
        split[upns[_owner(message, len(upns))]].append(("inbox", message))
    companies = _read_companies(companies_file) if companies_file else pick_companies(messages)
    return split, companies, failures


def read_mail(folder: Path) -> tuple[list[dict[str, Any]], int]:
    """Read every message under ``folder``; count the files and messages that are not mail."""
    messages: list[dict[str, Any]] = []
    failures: list[Path] = []

    def unreadable(path: Path, _reason: str) -> None:
        failures.append(path)

    for path, raw in iter_mail_files(folder, on_error=unreadable):
        try:
            messages.append(graph_message_from_eml(raw))
        except ValueError:
            unreadable(path, "not a message")
    return messages, len(failures)


def _owner(message: dict[str, Any], users: int) -> int:
    """Split real mail between users by its first recipient, deterministically."""
    recipients = message.get("toRecipients") or message.get("ccRecipients") or [{}]
    address = str(recipients[0].get("emailAddress", {}).get("address", "")).lower()
    return int(hashlib.sha256(address.encode("utf-8")).hexdigest(), 16) % users


def pick_companies(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pick the most frequent sender domains of real mail as companies.

    Only domains the admin API accepts count: a sender at the tenant's own domain (or under
    it), or at a host name that is not a domain (``localhost``, an address literal), is left
    out rather than failing the whole import. Spellings of one domain (case, IDNA) count as one,
    named as the mail first spelt it.
    """
    domains: Counter[str] = Counter()
    spelling: dict[str, str] = {}
    for message in messages:
        address = str((message.get("from") or {}).get("emailAddress", {}).get("address", ""))
        written = address.rpartition("@")[2].strip().lower()
        domain = _company_domain(written) if "@" in address else None
        if domain is not None:
            domains[domain] += 1
            spelling.setdefault(domain, written)
    picked = [spelling[domain] for domain, _count in domains.most_common(PICKED_COMPANIES)]
    return [{"name": domain, "domains": [domain]} for domain in picked]


def _company_domain(text: str) -> str | None:
    try:
        domain = normalize_domain(text)
    except ValidationError:
        return None
    own = normalize_domain(TENANT_DOMAIN)
    return None if domain == own or domain.endswith("." + own) else domain


def _read_companies(path: Path) -> list[dict[str, Any]]:
    companies = json.loads(path.read_text("utf-8"))
    if not isinstance(companies, list):
        message = f"{path} must hold a JSON list of companies"
        raise SystemExit(message)
    return companies


def _setup_tenant(
    stack: LocalStack,
    admin: str,
    users: list[tuple[str, str, str]],
    companies: list[dict[str, Any]],
    *,
    backfill_days: int,
) -> None:
    tenant = {
        "name": "Contoso (demo)",
        "ownDomains": [TENANT_DOMAIN],
        "backfillDays": backfill_days,
    }
    stack.call("PUT", "admin/tenant", admin, json=tenant).raise_for_status()
    for upn, name, oid in users:
        body = {"upn": upn, "displayName": name, "roles": ["Member"]}
        stack.call("PUT", f"admin/users/{oid}", admin, json=body).raise_for_status()
    stack.call("POST", "admin/companies/import", admin, json=companies).raise_for_status()


def _load(stack: LocalStack, upn: str, messages: list[tuple[str, dict[str, Any]]]) -> int:
    by_folder: dict[str, list[dict[str, Any]]] = {}
    for folder, message in messages:
        by_folder.setdefault(folder, []).append(message)
    for folder, batch in by_folder.items():
        stack.sim.load_messages(upn, folder, batch)
    return len(messages)


def _report(
    stack: LocalStack,
    tenant_id: str,
    *,
    admin: str,
    users: list[tuple[str, str, str]],
    loaded: dict[str, int],
    elapsed: float,
    failures: int,
) -> dict[str, Any]:
    rounds = []
    for upn, _name, oid in users:
        items = stack.call("GET", "me/connections", stack.token(tenant_id, oid, upn=upn)).json()[
            "items"
        ]
        rounds.append(items[0].get("lastRound") or {} if items else {})
    dropped: Counter[str] = Counter()
    for record in rounds:
        dropped.update(record.get("dropped", {}))
    companies = _company_emails(stack, admin)
    stored = {imid for company in companies for imid in company["internetMessageIds"]}
    return {
        "tenantId": tenant_id,
        "loaded": sum(loaded.values()),
        "unreadableFiles": failures,
        "seen": sum(r.get("seen", 0) for r in rounds),
        "kept": sum(r.get("kept", 0) for r in rounds),
        "dropped": dict(dropped),
        "storedEmails": len(stored),
        "syncSeconds": round(elapsed, 2),
        "companies": companies,
    }


def _pages(stack: LocalStack, admin: str, path: str, size: int) -> list[dict[str, Any]]:
    """Every item of a paged list of the API, following its continuation tokens."""
    items: list[dict[str, Any]] = []
    token = None
    while True:
        params = {"pageSize": size, **({"continuationToken": token} if token else {})}
        answer = stack.call("GET", path, admin, params=params)
        answer.raise_for_status()
        items.extend(answer.json()["items"])
        token = answer.json().get("continuationToken")
        if not token:
            return items


def _company_emails(stack: LocalStack, admin: str) -> list[dict[str, Any]]:
    result = []
    for company in _pages(stack, admin, "admin/companies", 1000):
        emails = _pages(stack, admin, f"companies/{company['id']}/emails", 100)
        result.append(
            {
                "id": company["id"],
                "name": company["name"],
                "emails": len(emails),
                "internetMessageIds": [e["internetMessageId"] for e in emails],
                "latest": emails[:5],
            }
        )
    return result


def print_report(report: dict[str, Any]) -> None:
    """Print the report as a short table."""
    unreadable = report["unreadableFiles"]
    print(f"\nloaded into mailboxes: {report['loaded']} messages ({unreadable} files unreadable)")
    print(f"seen by sync:          {report['seen']}")
    distinct = report["storedEmails"]
    print(f"kept:                  {report['kept']}  (stored as {distinct} distinct emails)")
    for reason, count in sorted(report["dropped"].items()):
        print(f"dropped, {reason + ':':<22} {count}")
    print(f"sync round took:       {report['syncSeconds']} s\n")
    print(f"{'company':<32} {'emails':>6}")
    for company in report["companies"]:
        print(f"{_clip(company['name'], 32):<32} {company['emails']:>6}")
    shown = next((c for c in report["companies"] if c["emails"]), None)
    if shown:
        print(f"\nlatest emails of {shown['name']} (read API, newest received first):")
        for email in shown["latest"]:
            sender = email.get("from", {}).get("address", "")
            received = str(email.get("receivedDateTime") or "")[:16]
            subject = str(email.get("subject") or "")
            print(f"  {received:<16}  {_clip(sender, 36):<36}  {_clip(subject, 50)}")


def _clip(text: str, width: int) -> str:
    """Return text that fits ``width`` columns, with an ellipsis where it was cut."""
    return text if len(text) <= width else text[: width - 1] + "\u2026"


if __name__ == "__main__":
    raise SystemExit(main())
