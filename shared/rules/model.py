"""What a blocking rule is: participant and content conditions joined by AND or OR, and a block.

Rules live at two scopes: the tenant's (set by its admins, applied to every mailbox) and a
user's (applied to that user's mailbox only). Built-in switches are tenant settings that drop
whole kinds of mail without writing a rule. Everything here is plain data; :mod:`.validation`
builds it from API JSON and :mod:`.engine` evaluates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SENDER = "sender"
RECIPIENT = "recipient"
ANY = "any"
ROLES = (SENDER, RECIPIENT, ANY)
"""Where a participant condition looks: From/Sender, To/Cc/Bcc, or all of them."""

SUBJECT = "subject"
BODY = "body"
SUBJECT_OR_BODY = "subjectOrBody"
CONTENT_FIELDS = (SUBJECT, BODY, SUBJECT_OR_BODY)

MATCH_ALL = "all"
MATCH_ANY = "any"
MATCH_MODES = (MATCH_ALL, MATCH_ANY)
"""How a rule joins its conditions: AND (``all``) or OR (``any``)."""

BLOCK = "block"
ACTIONS = (BLOCK,)

TENANT_SCOPE = "tenant"
USER_SCOPE = "user"

REASON_RULE = "rule"
REASON_INTERNAL = "internal_only"
REASON_AUTO_REPLY = "automatic_reply"
REASON_BULK = "bulk_mail"
REASON_NO_REPLY = "no_reply_sender"
KEEP_INTERNAL_THREAD = "internal_thread"


@dataclass(frozen=True, slots=True)
class ParticipantCondition:
    """True when a participant in ``role`` is one of the addresses, domains or group members.

    Attributes:
        role: ``sender``, ``recipient`` or ``any``.
        addresses: normalised addresses.
        domains: normalised domains; each also matches its subdomains.
        groups: names of the tenant's address groups.
        negate: true to turn the condition into "no such participant".
    """

    role: str
    addresses: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    negate: bool = False


@dataclass(frozen=True, slots=True)
class ContentCondition:
    """True when the subject, the body or either contains the phrase, ignoring case.

    Attributes:
        field: ``subject``, ``body`` or ``subjectOrBody``.
        phrase: the text looked for, with runs of white space collapsed to one space.
        negate: true to turn the condition into "does not contain".
    """

    field: str
    phrase: str
    negate: bool = False


Condition = ParticipantCondition | ContentCondition


@dataclass(frozen=True, slots=True)
class Rule:
    """One blocking rule: when its conditions hold (all, or any), the message is not stored."""

    rule_id: str
    name: str
    conditions: tuple[Condition, ...]
    match: str = MATCH_ALL
    action: str = BLOCK
    enabled: bool = True
    scope: str = TENANT_SCOPE
    created_at: str = ""

    @property
    def groups(self) -> frozenset[str]:
        """The address groups the rule's conditions name."""
        return frozenset(
            name
            for condition in self.conditions
            if isinstance(condition, ParticipantCondition)
            for name in condition.groups
        )


@dataclass(frozen=True, slots=True)
class AddressGroup:
    """A named list of addresses a tenant's rules can refer to, such as a customer's HR team."""

    name: str
    addresses: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Switches:
    """A tenant's built-in switches; ``True`` means that kind of mail is dropped.

    Attributes:
        internal_only: drop mail whose participants are all at the tenant's own domains (on
            by default). Off keeps such mail only when it answers a stored customer email.
        automatic_replies: drop automatic replies (out-of-office and other RFC 3834 replies).
        bulk_mail: drop mailing-list and bulk mail (``List-Id``, ``Precedence: bulk``,
            machine-generated ``Auto-Submitted``).
        no_reply_senders: drop mail sent from no-reply addresses.
    """

    internal_only: bool = True
    automatic_replies: bool = False
    bulk_mail: bool = False
    no_reply_senders: bool = False


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Everything that decides blocking for one mailbox: switches, groups and ordered rules."""

    switches: Switches = field(default_factory=Switches)
    groups: tuple[AddressGroup, ...] = ()
    rules: tuple[Rule, ...] = ()
