"""Unit tests for shared.rules.engine and shared.rules.decide: conditions, switches, decisions."""

from __future__ import annotations

import random
from typing import Any

import pytest

from shared.matching.companies import CompanyIndex, CompanyMatchData
from shared.rules.decide import answered_ids, decide
from shared.rules.engine import CompiledRules, MessageFacts
from shared.rules.model import (
    AddressGroup,
    ContentCondition,
    ParticipantCondition,
    Rule,
    RuleSet,
    Switches,
)

OWN = "vendor.example"


def mail(
    sender: str = "jane@acme.example",
    to: tuple[str, ...] = (f"alice@{OWN}",),
    subject: str = "Renewal",
    body: str = "<p>Hello</p>",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Graph-shaped message."""
    message: dict[str, Any] = {
        "id": "m1",
        "internetMessageId": "<m1@acme.example>",
        "subject": subject,
        "from": {"emailAddress": {"name": "", "address": sender}},
        "toRecipients": [{"emailAddress": {"name": "", "address": a}} for a in to],
        "body": {"contentType": "html", "content": body},
        "internetMessageHeaders": [{"name": k, "value": v} for k, v in (headers or {}).items()],
    }
    message.update(extra)
    return message


def rule(*conditions: Any, match: str = "all", rule_id: str = "r1", enabled: bool = True) -> Rule:
    return Rule(rule_id, "test rule", tuple(conditions), match=match, enabled=enabled)


def compiled(
    *rules: Rule, groups: tuple[AddressGroup, ...] = (), **switches: bool
) -> CompiledRules:
    return CompiledRules(RuleSet(Switches(**switches), groups, rules))


def blocked_by(rules: CompiledRules, message: dict[str, Any]) -> str | None:
    verdict = rules.check(MessageFacts.of(message))
    if not verdict.blocked:
        return None
    return verdict.rule.rule_id if verdict.rule else verdict.reason


INDEX = CompanyIndex.build([CompanyMatchData("acme", domains=("acme.example",))], [OWN])


def test_participant_sender_matches_only_the_sender():
    """A sender condition matches From, not a recipient with the same address."""
    # GIVEN a rule on the sender jane@acme.example
    rules = compiled(rule(ParticipantCondition("sender", addresses=("jane@acme.example",))))

    # WHEN mail comes from her and mail is sent to her
    incoming = mail(sender="Jane@ACME.example")
    outgoing = mail(sender=f"alice@{OWN}", to=("jane@acme.example",))

    # THEN only the incoming one is blocked
    assert blocked_by(rules, incoming) == "r1"
    assert blocked_by(rules, outgoing) is None


def test_participant_recipient_matches_to_cc_and_bcc():
    """A recipient condition matches To, Cc and Bcc, not From."""
    # GIVEN a rule on the recipient bob@acme.example
    rules = compiled(rule(ParticipantCondition("recipient", addresses=("bob@acme.example",))))
    bob = {"emailAddress": {"address": "bob@acme.example"}}

    # WHEN he is in Cc, in Bcc, or the sender
    in_cc = mail(ccRecipients=[bob])
    in_bcc = mail(bccRecipients=[bob])
    as_sender = mail(sender="bob@acme.example")

    # THEN Cc and Bcc match, the sender does not
    assert blocked_by(rules, in_cc) == "r1"
    assert blocked_by(rules, in_bcc) == "r1"
    assert blocked_by(rules, as_sender) is None


def test_participant_domain_matches_subdomains_and_idna_forms():
    """A domain condition matches the domain, its subdomains and its other IDNA form."""
    # GIVEN rules on acme.example and bücher.example (stored as its A-label)
    rules = compiled(
        rule(ParticipantCondition("any", domains=("acme.example", "xn--bcher-kva.example")))
    )

    # WHEN mail comes from a subdomain, from the Unicode form, and from an unrelated domain
    # THEN the first two are blocked and the third is not
    assert blocked_by(rules, mail(sender="x@eu.acme.example")) == "r1"
    assert blocked_by(rules, mail(sender="x@Bücher.example")) == "r1"
    assert blocked_by(rules, mail(sender="x@notacme.example")) is None


def test_participant_group_expands_to_its_addresses():
    """A group condition matches every address of the group."""
    # GIVEN a group "hr" and a rule on it
    hr = AddressGroup("hr", ("hr@acme.example", "pay@acme.example"))
    rules = compiled(rule(ParticipantCondition("sender", groups=("hr",))), groups=(hr,))

    # WHEN mail comes from a member and from someone else
    # THEN only the member's mail is blocked
    assert blocked_by(rules, mail(sender="pay@acme.example")) == "r1"
    assert blocked_by(rules, mail(sender="sales@acme.example")) is None


def test_participant_in_raw_headers_counts():
    """Addresses only in the raw headers (a Resent-From) are participants too."""
    # GIVEN a rule on ceo@acme.example
    rules = compiled(rule(ParticipantCondition("sender", addresses=("ceo@acme.example",))))

    # WHEN the address appears only in a raw Resent-From header, with a comma in the name
    message = mail(headers={"Resent-From": '"Doe, John" <CEO@acme.example>'})

    # THEN the rule matches
    assert blocked_by(rules, message) == "r1"


def test_content_is_case_insensitive_and_spans_html_and_line_breaks():
    """A body phrase matches regardless of case, HTML tags around it and line breaks inside it."""
    # GIVEN a rule on the body phrase "pension fund"
    rules = compiled(rule(ContentCondition("body", "Pension Fund")))

    # WHEN the body holds it in another case, split by a line break, inside HTML
    message = mail(body="<div>About your <b>PENSION\n  fund</b> &amp; more</div>")

    # THEN it matches, and a body without it does not
    assert blocked_by(rules, message) == "r1"
    assert blocked_by(rules, mail(body="<p>pensions are fine</p>")) is None


def test_content_subject_does_not_look_at_the_body():
    """A subject condition ignores the body; subjectOrBody looks at both."""
    # GIVEN a subject rule and a subject-or-body rule
    subject_only = compiled(rule(ContentCondition("subject", "pension")))
    either = compiled(rule(ContentCondition("subjectOrBody", "pension")))

    # WHEN only the body mentions it
    message = mail(subject="Hello", body="about the pension")

    # THEN only the subject-or-body rule matches
    assert blocked_by(subject_only, message) is None
    assert blocked_by(either, message) == "r1"


def test_content_negation_matches_when_the_phrase_is_absent():
    """A negated content condition holds when the phrase is missing."""
    # GIVEN a rule: from acme AND subject does not contain "invoice"
    rules = compiled(
        rule(
            ParticipantCondition("sender", domains=("acme.example",)),
            ContentCondition("subject", "invoice", negate=True),
        )
    )

    # WHEN acme sends an invoice and a chat
    # THEN only the chat is blocked
    assert blocked_by(rules, mail(subject="Invoice 42")) is None
    assert blocked_by(rules, mail(subject="Lunch?")) == "r1"


def test_and_needs_every_condition_or_needs_one():
    """AND blocks only when all conditions hold; OR blocks when any does."""
    # GIVEN the same two conditions joined by AND and by OR
    conditions = (
        ParticipantCondition("sender", addresses=("jane@acme.example",)),
        ContentCondition("subject", "pension"),
    )
    both = compiled(rule(*conditions, match="all"))
    either = compiled(rule(*conditions, match="any"))

    # WHEN only one condition holds
    message = mail(subject="Renewal")

    # THEN AND keeps the message and OR blocks it
    assert blocked_by(both, message) is None
    assert blocked_by(either, message) == "r1"
    assert blocked_by(both, mail(subject="Your pension")) == "r1"


def test_disabled_rule_never_blocks():
    """A disabled rule is left out when compiling."""
    rules = compiled(rule(ParticipantCondition("any", domains=("acme.example",)), enabled=False))
    assert len(rules) == 0
    assert blocked_by(rules, mail()) is None


def test_first_matching_rule_is_reported_and_matching_lists_all():
    """The first matching rule in order wins; ``matching`` lists every match."""
    first = rule(ParticipantCondition("any", domains=("acme.example",)), rule_id="first")
    second = rule(ContentCondition("subject", "renewal"), rule_id="second")
    rules = compiled(first, second)
    assert blocked_by(rules, mail()) == "first"
    assert [r.rule_id for r in rules.matching(MessageFacts.of(mail()))] == ["first", "second"]


def test_switch_automatic_replies():
    """Auto-Submitted: auto-replied and X-Autoreply are automatic replies, only when switched on."""
    reply = mail(headers={"Auto-Submitted": "Auto-Replied"})
    autoreply = mail(headers={"X-Autoreply": "yes"})
    assert blocked_by(compiled(automatic_replies=True), reply) == "automatic_reply"
    assert blocked_by(compiled(automatic_replies=True), autoreply) == "automatic_reply"
    assert blocked_by(compiled(automatic_replies=False), reply) is None
    assert blocked_by(compiled(automatic_replies=True), mail()) is None


def test_switch_bulk_mail():
    """List-Id, Precedence bulk/list/junk and machine-made Auto-Submitted are bulk mail."""
    on = compiled(bulk_mail=True)
    assert blocked_by(on, mail(headers={"List-Id": "News <news.acme.example>"})) == "bulk_mail"
    assert blocked_by(on, mail(headers={"Precedence": "Bulk"})) == "bulk_mail"
    assert blocked_by(on, mail(headers={"Auto-Submitted": "auto-generated"})) == "bulk_mail"
    assert blocked_by(on, mail(headers={"Auto-Submitted": "no"})) is None
    assert blocked_by(on, mail(headers={"Auto-Submitted": "auto-replied"})) is None
    assert blocked_by(compiled(), mail(headers={"List-Id": "x <x.example>"})) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("no; x=y", None),
        ("No (sent by hand)", None),
        ("(a (nested) comment) no", None),
        ('auto-generated; owner-email="ops@acme.example"', "bulk_mail"),
        ("auto-notified (delivery report)", "bulk_mail"),
        ("auto-replied; x=y", None),
    ],
)
def test_switch_bulk_mail_reads_auto_submitted_keyword_past_comments_and_parameters(
    value: str, reason: str | None
):
    """RFC 3834: the Auto-Submitted keyword counts, whatever comments or parameters follow it."""
    # GIVEN the bulk-mail switch on and a message with one Auto-Submitted value
    on = compiled(bulk_mail=True)

    # WHEN it is checked / THEN only machine-made keywords drop it as bulk mail
    assert blocked_by(on, mail(headers={"Auto-Submitted": value})) == reason


def test_switch_automatic_replies_read_the_keyword_past_a_comment():
    """Auto-Submitted: auto-replied with a comment is still an automatic reply."""
    reply = mail(headers={"Auto-Submitted": "auto-replied (vacation)"})
    assert blocked_by(compiled(automatic_replies=True), reply) == "automatic_reply"


def test_switch_no_reply_senders():
    """noreply, no-reply, do_not_reply and mailer-daemon senders are no-reply senders."""
    on = compiled(no_reply_senders=True)
    for sender in ("noreply@acme.example", "No-Reply@acme.example", "do_not_reply@acme.example"):
        assert blocked_by(on, mail(sender=sender)) == "no_reply_sender"
    assert blocked_by(on, mail(sender="mailer-daemon@acme.example")) == "no_reply_sender"
    assert blocked_by(on, mail(sender="reply@acme.example")) is None
    assert blocked_by(compiled(), mail(sender="noreply@acme.example")) is None


def test_decide_keeps_customer_mail_and_names_the_blocking_rule():
    """decide keeps customer mail for its company, and drops it naming the rule that blocks it."""
    block = rule(ContentCondition("subject", "secret"), rule_id="secret-rule")
    kept = decide(mail(), INDEX, compiled(block))
    dropped = decide(mail(subject="Top secret"), INDEX, compiled(block))
    assert (kept.keep, kept.reason, kept.company_ids) == (True, "customer", {"acme"})
    assert (dropped.keep, dropped.reason) == (False, "rule")
    assert dropped.rule is not None
    assert dropped.rule.rule_id == "secret-rule"


def test_decide_internal_only_switch_on_drops_internal_replies():
    """With internalOnly on (the default), internal mail is dropped even in a customer thread."""
    internal = mail(
        sender=f"bob@{OWN}", headers={"In-Reply-To": "<m0@acme.example>"}, subject="Re: x"
    )
    outcome = decide(internal, INDEX, compiled(), thread=lambda ids: frozenset({"acme"}))
    assert (outcome.keep, outcome.reason) == (False, "internal_only")


def test_decide_internal_only_switch_off_keeps_replies_to_stored_customer_mail():
    """With internalOnly off, an internal reply to a stored customer email joins its companies."""
    asked: list[list[str]] = []

    def thread(ids: list[str]) -> frozenset[str]:
        asked.append(ids)
        return frozenset({"acme"}) if "<m0@acme.example>" in ids else frozenset()

    reply = mail(
        sender=f"bob@{OWN}",
        headers={"References": "<root@acme.example> <m0@acme.example>"},
    )
    alone = mail(sender=f"bob@{OWN}")
    rules = compiled(internal_only=False)
    kept = decide(reply, INDEX, rules, thread=thread)
    dropped = decide(alone, INDEX, rules, thread=thread)
    assert (kept.keep, kept.reason, kept.company_ids) == (True, "internal_thread", {"acme"})
    assert asked[0] == ["<m0@acme.example>", "<root@acme.example>"]
    assert (dropped.keep, dropped.reason) == (False, "internal_only")


def test_decide_rules_apply_to_kept_internal_replies():
    """A rule still blocks an internal reply the internalOnly switch would keep."""
    block = rule(ContentCondition("subject", "salary"))
    reply = mail(sender=f"bob@{OWN}", subject="salary", headers={"In-Reply-To": "<a@b.example>"})
    rules = CompiledRules(RuleSet(Switches(internal_only=False), (), (block,)))
    outcome = decide(reply, INDEX, rules, thread=lambda ids: frozenset({"acme"}))
    assert (outcome.keep, outcome.reason) == (False, "rule")


def test_decide_no_customer_is_not_blamed_on_a_rule():
    """Mail with no customer participant is dropped as no_customer before rules are looked at."""
    everything = rule(ParticipantCondition("any", domains=("law.example",)))
    outcome = decide(mail(sender="me@law.example"), INDEX, compiled(everything))
    assert (outcome.keep, outcome.reason, outcome.rule) == (False, "no_customer", None)


def test_answered_ids_reads_in_reply_to_and_references_newest_first():
    """In-Reply-To comes first, then References from the newest, without repeats, at most five."""
    refs = " ".join(f"<r{n}@x.example>" for n in range(8))
    message = mail(headers={"In-Reply-To": "<r7@x.example>", "References": refs})
    assert answered_ids(message) == [f"<r{n}@x.example>" for n in (7, 6, 5, 4, 3)]


def test_indexed_check_finds_the_same_first_rule_as_checking_every_rule():
    """The rule index never changes the outcome: first match equals a check of every rule."""
    # GIVEN many random rules over a small vocabulary, AND and OR, some negated
    rng = random.Random(5)  # noqa: S311 - seeded test data, not security
    people = [f"p{n}@acme.example" for n in range(6)] + [f"q{n}@{OWN}" for n in range(3)]
    domains = ["acme.example", "eu.acme.example", OWN, "law.example"]
    words = ["pension", "renewal", "salary", "lunch"]

    def condition() -> Any:
        negate = rng.random() < 0.3
        if rng.random() < 0.5:
            role = rng.choice(["sender", "recipient", "any"])
            picks = {"addresses": tuple(rng.sample(people, 2))} if rng.random() < 0.5 else {}
            picks = picks or {"domains": (rng.choice(domains),)}
            return ParticipantCondition(role, negate=negate, **picks)
        return ContentCondition(
            rng.choice(["subject", "body", "subjectOrBody"]), rng.choice(words), negate
        )

    rules = [
        rule(
            *[condition() for _ in range(rng.randint(1, 3))],
            match=rng.choice(["all", "any"]),
            rule_id=f"r{n}",
        )
        for n in range(60)
    ]
    engine = compiled(*rules)

    # WHEN random messages are checked
    for _ in range(300):
        message = mail(
            sender=rng.choice(people),
            to=tuple(rng.sample(people, 2)),
            subject=" ".join(rng.sample(words, 2)),
            body=f"<p>{rng.choice(words)}</p>",
        )
        facts = MessageFacts.of(message)
        everything = engine.matching(facts)
        verdict = engine.check(facts)

        # THEN the indexed check reports the first rule that a full check finds
        expected = everything[0].rule_id if everything else None
        assert (verdict.rule.rule_id if verdict.rule else None) == expected


RIVAL_INDEX = CompanyIndex.build(
    [
        CompanyMatchData("acme", domains=("acme.example",)),
        CompanyMatchData("rival", domains=("rival.example",)),
    ],
    [OWN],
)


def _bcc(*addresses: str) -> list[dict[str, Any]]:
    return [{"emailAddress": {"name": "", "address": a}} for a in addresses]


def test_decide_names_the_companies_only_bcc_reaches():
    """A company reached only through Bcc is kept but named as hidden from other copies."""
    # GIVEN the sender's copy of a customer email with a rival address in Bcc
    sent = mail(
        sender=f"ann@{OWN}", to=("buyer@acme.example",), bccRecipients=_bcc("s@rival.example")
    )

    # WHEN it is decided
    outcome = decide(sent, RIVAL_INDEX, compiled())

    # THEN it is kept for both companies, the rival one only through Bcc
    assert (outcome.keep, outcome.company_ids) == (True, {"acme", "rival"})
    assert outcome.bcc_company_ids == {"rival"}


def test_decide_a_company_also_in_to_is_not_hidden():
    """A company that To or Cc reaches too is shown to everyone, whatever Bcc holds."""
    # GIVEN a copy naming the rival company in Cc and in Bcc
    sent = mail(
        sender=f"ann@{OWN}",
        to=("buyer@acme.example",),
        ccRecipients=_bcc("boss@rival.example"),
        bccRecipients=_bcc("s@rival.example"),
    )

    # WHEN it is decided
    outcome = decide(sent, RIVAL_INDEX, compiled())

    # THEN no company is hidden
    assert outcome.bcc_company_ids == frozenset()


def test_decide_a_customer_only_in_bcc_hides_that_customer():
    """Internal mail Bcc'ing a customer is kept for it, hidden from the other copies."""
    # GIVEN an internal email with a customer only in Bcc
    sent = mail(sender=f"ann@{OWN}", to=(f"bob@{OWN}",), bccRecipients=_bcc("buyer@acme.example"))

    # WHEN it is decided
    outcome = decide(sent, RIVAL_INDEX, compiled())

    # THEN it is kept, and the customer is only the sender's to see
    assert (outcome.keep, outcome.bcc_company_ids) == (True, {"acme"})
