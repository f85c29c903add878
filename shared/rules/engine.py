"""Evaluate blocking rules and switches against Graph messages, fast.

A :class:`RuleSet` is compiled once per sync job into :class:`CompiledRules`: disabled rules
left out, group names replaced by their addresses, every address and domain list turned into a
frozenset. Each message is read once into :class:`MessageFacts` (senders, recipients, every
parent domain of theirs, folded subject, headers); a participant condition is then one or two
set intersections and a content condition one substring search. The body is reduced to folded
text only when a condition looks at it, and at most once per message.

Most rules need a given participant or phrase to be present before they can match (one such
condition of an AND rule, every condition of an OR rule without negation). Compiling indexes
rules by those addresses, domains and phrases, so a message is only checked against the rules
one of its participants or phrases can trigger, plus the few rules that cannot be indexed.

Text is compared case-insensitively (``str.casefold``) with runs of white space collapsed, so a
phrase matches across line breaks. HTML bodies are compared as their text: tags dropped,
entities decoded.

Known limitations: a phrase is matched as a substring, so ``pension`` also matches
``pensioner``; there is no word-boundary or language-aware matching. A phrase split by an HTML
tag inside a word (``pen<b>sion</b>``) does not match. Attachments are not read.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.matching.addresses import message_roles
from shared.rules.model import (
    ANY,
    BODY,
    MATCH_ALL,
    REASON_AUTO_REPLY,
    REASON_BULK,
    REASON_NO_REPLY,
    REASON_RULE,
    SENDER,
    SUBJECT,
    ContentCondition,
    ParticipantCondition,
    Rule,
    RuleSet,
    Switches,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from shared.matching.addresses import Address, MessageRoles

_TAG = re.compile(r"<(?:script|style)\b.*?</(?:script|style)\s*>|<[^>]*>", re.DOTALL | re.I)
_NO_REPLY = re.compile(r"(?:no|do[-_.]?not)[-_.]?reply\b.*|mailer-daemon|postmaster")
_COMMENT = re.compile(r"\([^()]*\)")
_BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})
_AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond")


@dataclass(slots=True)
class MessageFacts:
    """What rules look at in one message, normalised once."""

    senders: frozenset[str]
    recipients: frozenset[str]
    sender_domains: frozenset[str]
    recipient_domains: frozenset[str]
    subject: str
    headers: Mapping[str, tuple[str, ...]]
    raw_body: Any = None
    _body: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, message: Mapping[str, Any], roles: MessageRoles | None = None) -> MessageFacts:
        """Read a Graph message (with ``internetMessageHeaders`` when it has them).

        Args:
            message: the Graph message.
            roles: its senders and recipients when the caller parsed them already.
        """
        senders, recipients, _ = roles or message_roles(message)
        return cls(
            senders=frozenset(address.address for address in senders),
            recipients=frozenset(address.address for address in recipients),
            sender_domains=_parent_domains(senders),
            recipient_domains=_parent_domains(recipients),
            subject=fold(str(message.get("subject") or "")),
            headers=_headers(message.get("internetMessageHeaders")),
            raw_body=message.get("body"),
        )

    @property
    def body(self) -> str:
        """The body as folded text; computed on first use."""
        if self._body is None:
            self._body = _body_text(self.raw_body)
        return self._body

    @property
    def keys(self) -> frozenset[str]:
        """Every address and parent domain of every participant, whatever the role."""
        return self.senders | self.recipients | self.sender_domains | self.recipient_domains

    def header(self, name: str) -> tuple[str, ...]:
        """Return every value of a header (lower-case name), empty when absent."""
        return self.headers.get(name, ())


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a message is blocked, and by which switch (reason code) or rule."""

    blocked: bool
    reason: str | None = None
    rule: Rule | None = None


KEEP = Verdict(blocked=False)


@dataclass(frozen=True, slots=True)
class _Participant:
    role: str
    addresses: frozenset[str]
    domains: frozenset[str]
    negate: bool

    def holds(self, facts: MessageFacts) -> bool:
        if self.role == SENDER:
            hit = _meets(self, facts.senders, facts.sender_domains)
        elif self.role == ANY:
            hit = _meets(self, facts.senders, facts.sender_domains) or _meets(
                self, facts.recipients, facts.recipient_domains
            )
        else:
            hit = _meets(self, facts.recipients, facts.recipient_domains)
        return hit != self.negate


@dataclass(frozen=True, slots=True)
class _Content:
    field: str
    phrase: str
    negate: bool

    def holds(self, facts: MessageFacts) -> bool:
        return _contains(facts, self.field, self.phrase) != self.negate


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    every: bool
    conditions: tuple[_Participant | _Content, ...]

    def holds(self, facts: MessageFacts) -> bool:
        if self.every:
            return all(condition.holds(facts) for condition in self.conditions)
        return any(condition.holds(facts) for condition in self.conditions)


class CompiledRules:
    """A rule set ready to evaluate; build once per sync job, use for every message."""

    def __init__(self, rules: RuleSet) -> None:
        members = {group.name: group.addresses for group in rules.groups}
        self.switches: Switches = rules.switches
        self._rules = tuple(
            _compile(rule, members) for rule in rules.rules if rule.enabled and rule.conditions
        )
        self._by_key: dict[str, set[int]] = {}
        self._by_phrase: dict[tuple[str, str], set[int]] = {}
        self._always: set[int] = set()
        for position, compiled in enumerate(self._rules):
            self._index(position, compiled)
        self._needs_body = any(where != SUBJECT for _, where in self._by_phrase)

    def __len__(self) -> int:
        return len(self._rules)

    def check(self, facts: MessageFacts) -> Verdict:
        """Return the first switch, then the first rule, that blocks the message."""
        reason = switch_reason(facts, self.switches)
        if reason is not None:
            return Verdict(blocked=True, reason=reason)
        for position in self._candidates(facts):
            compiled = self._rules[position]
            if compiled.holds(facts):
                return Verdict(blocked=True, reason=REASON_RULE, rule=compiled.rule)
        return KEEP

    def matching(self, facts: MessageFacts) -> list[Rule]:
        """Return every enabled rule that matches the message, in order (for a dry run)."""
        return [compiled.rule for compiled in self._rules if compiled.holds(facts)]

    def _candidates(self, facts: MessageFacts) -> list[int]:
        """Return, in rule order, the positions of the rules this message could trigger."""
        found = set(self._always)
        for key in facts.keys:
            hits = self._by_key.get(key)
            if hits:
                found |= hits
        if self._by_phrase:
            subject = facts.subject
            body = facts.body if self._needs_body else ""
            for (phrase, where), positions in self._by_phrase.items():
                if (where != BODY and phrase in subject) or (where != SUBJECT and phrase in body):
                    found |= positions
        return sorted(found)

    def _index(self, position: int, compiled: _Compiled) -> None:
        positive = [c for c in compiled.conditions if not c.negate]
        if compiled.every and positive:
            # One condition that must hold is enough to gate an AND rule: the first, cheapest.
            gates: list[_Participant | _Content] = positive[:1]
        elif not compiled.every and len(positive) == len(compiled.conditions):
            gates = positive
        else:
            self._always.add(position)
            return
        for gate in gates:
            if isinstance(gate, _Participant):
                for key in gate.addresses | gate.domains:
                    self._by_key.setdefault(key, set()).add(position)
            else:
                self._by_phrase.setdefault((gate.phrase, gate.field), set()).add(position)


def switch_reason(facts: MessageFacts, switches: Switches) -> str | None:
    """Return the reason code of the first switched-on kind the message is, else ``None``."""
    if switches.automatic_replies and is_automatic_reply(facts):
        return REASON_AUTO_REPLY
    if switches.bulk_mail and is_bulk(facts):
        return REASON_BULK
    if switches.no_reply_senders and is_no_reply(facts):
        return REASON_NO_REPLY
    return None


def is_automatic_reply(facts: MessageFacts) -> bool:
    """Tell an automatic reply (RFC 3834 ``Auto-Submitted: auto-replied``, ``X-Autoreply``)."""
    if "auto-replied" in _auto_submitted(facts):
        return True
    if "auto_reply" in facts.header("precedence"):
        return True
    return any(facts.header(name) for name in _AUTO_REPLY_HEADERS)


def is_bulk(facts: MessageFacts) -> bool:
    """Tell list or bulk mail: ``List-Id``, ``Precedence: bulk/list/junk``, or machine-made.

    ``Auto-Submitted`` values other than ``no`` and ``auto-replied`` (``auto-generated``,
    ``auto-notified``) mark mail a program sent on its own, which counts as bulk here.
    """
    if facts.header("list-id"):
        return True
    if not _BULK_PRECEDENCE.isdisjoint(facts.header("precedence")):
        return True
    return not _auto_submitted(facts) <= {"no", "", "auto-replied"}


def _auto_submitted(facts: MessageFacts) -> set[str]:
    """Return the keywords of the ``Auto-Submitted`` fields, without comments or parameters.

    RFC 3834 allows both: ``auto-generated; owner-email="x@y"``, ``no (sent by hand)``.
    """
    keywords = set()
    for value in facts.header("auto-submitted"):
        text, previous = value, None
        while previous != text:
            # Comments may nest; each pass removes the innermost ones.
            previous, text = text, _COMMENT.sub(" ", text)
        keywords.add(text.split(";", 1)[0].strip().casefold())
    return keywords


def is_no_reply(facts: MessageFacts) -> bool:
    """Tell mail from a no-reply sender (``noreply@``, ``no-reply@``, ``donotreply@``...)."""
    return any(_NO_REPLY.fullmatch(sender.partition("@")[0]) for sender in facts.senders)


def fold(text: str) -> str:
    """Return text for case-insensitive comparison: case-folded, white space collapsed."""
    return " ".join(text.casefold().split())


def _compile(rule: Rule, members: Mapping[str, tuple[str, ...]]) -> _Compiled:
    compiled: list[_Participant | _Content] = []
    for condition in rule.conditions:
        if isinstance(condition, ContentCondition):
            compiled.append(_Content(condition.field, fold(condition.phrase), condition.negate))
        elif isinstance(condition, ParticipantCondition):
            compiled.append(_participant(condition, members))
    # Cheap set tests first: an AND rule usually fails on its participants.
    compiled.sort(key=lambda condition: isinstance(condition, _Content))
    return _Compiled(rule, rule.match == MATCH_ALL, tuple(compiled))


def _participant(
    condition: ParticipantCondition, members: Mapping[str, tuple[str, ...]]
) -> _Participant:
    # NOTE: a group deleted after a rule named it (user rules are not checked on delete)
    # contributes no address; the rest of the condition still applies.
    addresses = set(condition.addresses)
    for name in condition.groups:
        addresses.update(members.get(name, ()))
    return _Participant(
        condition.role, frozenset(addresses), frozenset(condition.domains), condition.negate
    )


def _contains(facts: MessageFacts, where: str, phrase: str) -> bool:
    if where == SUBJECT:
        return phrase in facts.subject
    if where == BODY:
        return phrase in facts.body
    return phrase in facts.subject or phrase in facts.body


def _meets(condition: _Participant, addresses: frozenset[str], domains: frozenset[str]) -> bool:
    return not condition.addresses.isdisjoint(addresses) or not condition.domains.isdisjoint(
        domains
    )


def _parent_domains(addresses: Iterable[Address]) -> frozenset[str]:
    """Every domain of the addresses and each parent with at least two labels."""
    found: set[str] = set()
    for address in addresses:
        labels = address.domain.split(".")
        found.update(".".join(labels[start:]) for start in range(len(labels) - 1))
    return frozenset(found)


def _headers(raw: Any) -> dict[str, tuple[str, ...]]:
    headers: dict[str, list[str]] = {}
    if not isinstance(raw, list):
        return {}
    for header in raw:
        if not isinstance(header, dict):
            continue
        name, value = header.get("name"), header.get("value")
        if isinstance(name, str) and isinstance(value, str):
            headers.setdefault(name.strip().lower(), []).append(fold(value))
    return {name: tuple(values) for name, values in headers.items()}


def _body_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    content = body.get("content")
    if not isinstance(content, str):
        return ""
    if str(body.get("contentType", "")).lower() == "html":
        content = html.unescape(_TAG.sub(" ", content))
    return fold(content)
