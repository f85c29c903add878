"""The whole keep-or-drop decision for one message, shared by sync and the admin dry run.

In order: a message without participants is dropped; one whose participants are all at the
tenant's own domains is dropped as ``internal_only`` unless the tenant switched that off and the
message answers a stored customer email (then it joins that email's companies); a message with
no customer participant is dropped as ``no_customer``; then the switches (automatic replies,
bulk mail, no-reply senders) and the rules, tenant rules before the user's, first match wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.matching.addresses import message_open_participants, message_roles
from shared.matching.companies import DROP_INTERNAL, KEEP_CUSTOMER, classify
from shared.rules.engine import MessageFacts
from shared.rules.model import KEEP_INTERNAL_THREAD

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from shared.matching.addresses import Address
    from shared.matching.companies import CompanyIndex
    from shared.rules.engine import CompiledRules
    from shared.rules.model import Rule

    ThreadLookup = Callable[[list[str]], frozenset[str]]

MAX_THREAD_REFERENCES = 5
"""How many of the newest ``References`` a kept internal reply is looked up by."""

_MESSAGE_ID = re.compile(r"<[^<>\s]{1,1000}>")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happens to one message: kept for companies, or dropped with a reason (and rule)."""

    keep: bool
    reason: str
    company_ids: frozenset[str]
    participants: tuple[Address, ...]
    rule: Rule | None = None
    bcc_company_ids: frozenset[str] = frozenset()
    """The companies only a Bcc recipient of this copy reaches, which other copies do not show."""


def decide(
    message: Mapping[str, Any],
    index: CompanyIndex,
    rules: CompiledRules,
    *,
    thread: ThreadLookup | None = None,
) -> Outcome:
    """Decide whether a Graph message is stored, for which companies, or why not.

    Args:
        message: the Graph message, with ``internetMessageHeaders`` when available.
        index: the tenant's company index.
        rules: the mailbox's compiled switches and rules.
        thread: given Message-IDs the message answers, returns the companies of the first
            one stored; consulted only for internal mail when ``internalOnly`` is off.
    """
    roles = message_roles(message)
    participants = tuple(roles.participants)
    decision = classify(participants, index)
    companies = decision.company_ids
    reason = decision.reason
    if reason == DROP_INTERNAL and not rules.switches.internal_only and thread is not None:
        companies = thread(answered_ids(message))
        reason = KEEP_INTERNAL_THREAD if companies else DROP_INTERNAL
    if reason not in (KEEP_CUSTOMER, KEEP_INTERNAL_THREAD):
        return Outcome(False, reason, frozenset(), participants)

    verdict = rules.check(MessageFacts.of(message, roles))
    if verdict.blocked:
        return Outcome(False, str(verdict.reason), frozenset(), participants, verdict.rule)
    hidden = frozenset[str]()
    if reason == KEEP_CUSTOMER:
        shown = classify(message_open_participants(message), index).company_ids
        hidden = companies - shown
    return Outcome(True, reason, companies, participants, bcc_company_ids=hidden)


def answered_ids(message: Mapping[str, Any]) -> list[str]:
    """Return the Message-IDs a message answers, newest first (``In-Reply-To``, ``References``)."""
    found: list[str] = []
    headers = message.get("internetMessageHeaders")
    for header in headers if isinstance(headers, list) else []:
        if not isinstance(header, dict) or not isinstance(header.get("value"), str):
            continue
        name = str(header.get("name", "")).strip().lower()
        if name in ("in-reply-to", "references"):
            ids = _MESSAGE_ID.findall(header["value"])
            found.extend(reversed(ids) if name == "references" else ids)
    return list(dict.fromkeys(found))[:MAX_THREAD_REFERENCES]
