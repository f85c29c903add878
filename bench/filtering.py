"""Benchmark of the sync filter: company matching and blocking rules, in this process.

Two measurements, each the median of several runs over the same seeded input:

1. **Address matching**: a company index of 10,000 companies with 3 related domains each
   (:class:`shared.matching.companies.CompanyIndex`), and a stream of addresses, a third at a
   company domain, a third at a subdomain of one, a third at unrelated domains. Timed twice:
   raw address text parsed (``parse_address``, RFC 5322 and IDNA) and then matched, and
   already-parsed addresses matched only.
2. **Blocking rules**: 200 tenant rules (participant rules on addresses, domains and groups,
   subject and body phrases, AND and OR, some negated) compiled once, as a sync job does, then
   every message of a stream of Graph-shaped messages (HTML bodies of about 2 KB, headers)
   evaluated: reading the message (:meth:`MessageFacts.of`) and checking switches and rules.
   Almost no message matches, so nearly every message is checked against all 200 rules, the
   slowest case. The whole keep-or-drop decision (:func:`shared.rules.decide.decide`, company
   match included) is timed too.

Each row also times a baseline on the same input in the same run, the plain way a script would
do that row's job with the standard library, so the ratio carries over between machines where
the rates do not: ``email.utils.parseaddr`` and one exact lookup of the domain in a dict (no
IDNA, no subdomains, no tenant domains) for the address rows; for the rule rows, the subject
and body lower-cased and searched for each of the 200 rules' phrases in turn, with the sender's
domain looked up once for the decision. The product compiles its rules, so it may beat that
baseline (a ratio below 1).

No storage or network is involved; figures are single-threaded CPU time on this machine.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

from shared.matching.addresses import parse_address
from shared.matching.companies import CompanyIndex, CompanyMatchData
from shared.rules.decide import decide
from shared.rules.engine import CompiledRules, MessageFacts
from shared.rules.model import (
    AddressGroup,
    ContentCondition,
    ParticipantCondition,
    Rule,
    RuleSet,
    Switches,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

COMPANIES = 10_000
DOMAINS_PER_COMPANY = 3
RULES = 200
OWN_DOMAIN = "vendor.example"
SEED = 11


@dataclass(frozen=True, slots=True)
class FilterPlan:
    """How much input, and how many runs the medians are over."""

    name: str
    runs: int
    addresses: int
    messages: int


STANDARD = FilterPlan(name="standard", runs=5, addresses=200_000, messages=10_000)
QUICK = FilterPlan(name="quick", runs=3, addresses=30_000, messages=2_000)


@dataclass(frozen=True, slots=True)
class Measure:
    """The median rate of one timed operation, and every run's seconds."""

    what: str
    items: int
    median_seconds: float
    per_second: float
    microseconds_each: float
    runs: list[float]
    baseline_seconds: float
    ratio: float
    """Median seconds over the baseline's median seconds."""


def run_filtering_bench(plan: FilterPlan, out: Path) -> list[Measure]:
    """Measure address matching and rule evaluation, print a table and write the JSON."""
    rng = random.Random(SEED)
    companies = _companies()
    started = time.perf_counter()
    index = CompanyIndex.build(companies, [OWN_DOMAIN])
    index_seconds = time.perf_counter() - started
    raw = _addresses(rng, plan.addresses)
    parsed = [address for address in map(parse_address, raw) if address is not None]
    ruleset = _ruleset(rng)
    started = time.perf_counter()
    compiled = CompiledRules(ruleset)
    compile_seconds = time.perf_counter() - started
    messages = [_message(rng, number) for number in range(plan.messages)]
    domains = {domain: company.company_id for company in companies for domain in company.domains}
    plain = [address.domain for address in parsed]
    phrases = [f"codeword {number}" for number in range(RULES)]

    results = [
        _measure(
            "parse and match an address",
            len(raw),
            plan.runs,
            lambda: _match_raw(index, raw),
            lambda: _floor_match_raw(domains, raw),
        ),
        _measure(
            "match a parsed address",
            len(parsed),
            plan.runs,
            lambda: _match(index, parsed),
            lambda: sum(1 for domain in plain if domain in domains),
        ),
        _measure(
            f"check a message against {RULES} rules",
            len(messages),
            plan.runs,
            lambda: _check(compiled, messages),
            lambda: _floor_check(phrases, messages),
        ),
        _measure(
            f"decide a message (companies and {RULES} rules)",
            len(messages),
            plan.runs,
            lambda: _decide(index, compiled, messages),
            lambda: _floor_decide(domains, phrases, messages),
        ),
    ]
    blocked = sum(compiled.check(MessageFacts.of(message)).blocked for message in messages)
    setup = {
        "companies": COMPANIES,
        "domainsPerCompany": DOMAINS_PER_COMPANY,
        "indexBuildSeconds": round(index_seconds, 3),
        "rules": len(compiled),
        "compileSeconds": round(compile_seconds, 4),
        "messagesBlocked": blocked,
    }
    _print_table(plan, setup, results)
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "plan": plan.name,
        "runs": plan.runs,
        "cpus": os.cpu_count(),
        "measuredAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "setup": setup,
        "results": [asdict(result) for result in results],
    }
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {out}")
    return results


def _measure(
    what: str,
    items: int,
    runs: int,
    work: Callable[[], object],
    floor: Callable[[], object],
) -> Measure:
    """Time ``work`` and its baseline ``floor`` one after the other, ``runs`` times each."""
    seconds, floors = [], []
    for _ in range(runs):
        seconds.append(_seconds(work))
        floors.append(_seconds(floor))
    median, floor_median = statistics.median(seconds), statistics.median(floors)
    return Measure(
        what=what,
        items=items,
        median_seconds=round(median, 4),
        per_second=round(items / median, 1),
        microseconds_each=round(median / items * 1e6, 2),
        runs=[round(value, 4) for value in seconds],
        baseline_seconds=round(floor_median, 4),
        ratio=round(median / floor_median, 2),
    )


def _seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _floor_match_raw(domains: dict[str, str], raw: list[str]) -> int:
    found = 0
    for text in raw:
        _, address = parseaddr(text)
        if address.rpartition("@")[2].lower() in domains:
            found += 1
    return found


def _text(message: dict[str, Any]) -> str:
    return f"{message['subject']} {message['body']['content']}".lower()


def _floor_check(phrases: list[str], messages: list[dict[str, Any]]) -> int:
    return sum(any(phrase in _text(message) for phrase in phrases) for message in messages)


def _floor_decide(
    domains: dict[str, str], phrases: list[str], messages: list[dict[str, Any]]
) -> int:
    kept = 0
    for message in messages:
        sender = str(message["from"]["emailAddress"]["address"])
        text = _text(message)
        if sender.rpartition("@")[2] in domains and not any(p in text for p in phrases):
            kept += 1
    return kept


def _match_raw(index: CompanyIndex, raw: list[str]) -> int:
    found = 0
    for text in raw:
        address = parse_address(text)
        if address is not None and index.companies_for(address):
            found += 1
    return found


def _match(index: CompanyIndex, parsed: list[Any]) -> int:
    return sum(1 for address in parsed if index.companies_for(address))


def _check(compiled: CompiledRules, messages: list[dict[str, Any]]) -> int:
    return sum(compiled.check(MessageFacts.of(message)).blocked for message in messages)


def _decide(index: CompanyIndex, compiled: CompiledRules, messages: list[dict[str, Any]]) -> int:
    return sum(decide(message, index, compiled).keep for message in messages)


def _companies() -> list[CompanyMatchData]:
    return [
        CompanyMatchData(
            f"company-{number}",
            domains=(f"c{number}.example", f"c{number}-group.example", f"c{number}.co.example"),
        )
        for number in range(COMPANIES)
    ]


def _addresses(rng: random.Random, count: int) -> list[str]:
    addresses = []
    for number in range(count):
        company = rng.randrange(COMPANIES)
        kind = number % 3
        if kind == 0:
            domain = f"c{company}-group.example"
        elif kind == 1:
            domain = f"eu.c{company}.example"
        else:
            domain = f"p{company}.mail.example"
        addresses.append(f'"Person {number}" <person{number % 997}@{domain}>')
    return addresses


def _ruleset(rng: random.Random) -> RuleSet:
    group = AddressGroup("hr", tuple(f"hr{n}@c{n}.example" for n in range(50)))
    rules: list[Rule] = []
    for number in range(RULES):
        company = rng.randrange(COMPANIES)
        person = ParticipantCondition(
            "any",
            addresses=(f"blocked{number}@c{company}.example",),
            domains=(f"x{number}.example",),
        )
        phrase = ContentCondition("subjectOrBody", f"codeword {number}")
        kind = number % 4
        if kind == 0:
            conditions: tuple[Any, ...] = (person,)
        elif kind == 1:
            conditions = (ParticipantCondition("sender", groups=("hr",)), phrase)
        elif kind == 2:
            conditions = (person, ContentCondition("subject", "renewal", negate=True))
        else:
            conditions = (phrase, person)
        match = "any" if kind == 3 else "all"
        rules.append(Rule(f"rule-{number}", f"rule {number}", conditions, match=match))
    return RuleSet(Switches(automatic_replies=True, bulk_mail=True), (group,), tuple(rules))


def _message(rng: random.Random, number: int) -> dict[str, Any]:
    company = rng.randrange(COMPANIES)
    sentences = " ".join(f"<p>Paragraph {n} about the project plan.</p>" for n in range(40))

    def recipient(address: str) -> dict[str, Any]:
        return {"emailAddress": {"name": "", "address": address}}

    return {
        "id": f"m{number}",
        "internetMessageId": f"<m{number}@c{company}.example>",
        "subject": f"Re: Project plan {number}",
        "from": recipient(f"person{number}@c{company}.example"),
        "toRecipients": [recipient(f"user{number % 50}@{OWN_DOMAIN}")],
        "ccRecipients": [recipient(f"other{number}@c{company}-group.example")],
        "body": {"contentType": "html", "content": f"<html><body>{sentences}</body></html>"},
        "internetMessageHeaders": [
            {"name": "Received", "value": "from mx.example by mx.vendor.example"},
            {"name": "Message-ID", "value": f"<m{number}@c{company}.example>"},
        ],
    }


def _print_table(plan: FilterPlan, setup: dict[str, Any], results: list[Measure]) -> None:
    print()
    print(
        f"sync filter ({plan.name}): {COMPANIES:,} companies x {DOMAINS_PER_COMPANY} domains, "
        f"{setup['rules']} rules; medians of {plan.runs} runs"
    )
    print("what | items | per second | microseconds each | baseline s | ratio")
    for r in results:
        print(
            f"{r.what} | {r.items:,} | {r.per_second:,.0f} | {r.microseconds_each:.2f} | "
            f"{r.baseline_seconds:.3f} | {r.ratio:.1f}x"
        )
