"""Blocking rules read against calendar events (shared.sync.eventrules)."""

from __future__ import annotations

from typing import Any

from shared.rules.model import (
    RECIPIENT,
    SENDER,
    ContentCondition,
    ParticipantCondition,
    Rule,
    RuleSet,
    Switches,
)
from shared.sync.eventrules import check_event, event_rules


def _event(organizer: str, attendees: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "subject": "Quarterly review",
        "organizer": {"emailAddress": {"address": organizer}},
        "attendees": [{"emailAddress": {"address": a}} for a in attendees],
        **extra,
    }


def _rules(*conditions: ParticipantCondition | ContentCondition, **switches: bool) -> RuleSet:
    rule = Rule(rule_id="r1", name="test", conditions=conditions)
    return RuleSet(switches=Switches(**switches), rules=(rule,))


def test_event_rules_organiser_is_the_sender_and_attendees_the_recipients() -> None:
    """A sender condition looks at the organiser only, a recipient one at the attendees only."""
    # GIVEN rules on the counsel as sender, and on the counsel as recipient
    as_sender = event_rules(_rules(ParticipantCondition(SENDER, addresses=("law@acme.example",))))
    as_recipient = event_rules(
        _rules(ParticipantCondition(RECIPIENT, addresses=("law@acme.example",)))
    )
    organised = _event("law@acme.example", ["ann@own.example"])
    attended = _event("ann@own.example", ["law@acme.example"])

    # WHEN each event is checked against each rule
    results = [
        check_event(r, e).blocked for r in (as_sender, as_recipient) for e in (organised, attended)
    ]

    # THEN each rule blocks exactly the event where the counsel has its role
    assert results == [True, False, False, True]


def test_event_rules_read_the_html_body_where_graph_gives_it() -> None:
    """A body phrase matches the event body's text; an event without a body is not blocked."""
    # GIVEN a rule on a body phrase
    rules = event_rules(_rules(ContentCondition("body", "board pack")))
    html = {"contentType": "html", "content": "<p>Bring the <b>Board Pack</b></p>"}

    # WHEN events with and without that body are checked
    with_body = check_event(rules, _event("a@acme.example", [], body=html))
    without = check_event(rules, _event("a@acme.example", []))

    # THEN only the one whose body says it is blocked, by the rule
    assert (with_body.blocked, with_body.reason, without.blocked) == (True, "rule", False)


def test_event_rules_ignore_mail_only_switches() -> None:
    """Automatic-reply and bulk switches are off for events; the no-reply switch still holds."""
    # GIVEN every switch on and no rule
    ruleset = RuleSet(
        switches=Switches(automatic_replies=True, bulk_mail=True, no_reply_senders=True)
    )
    rules = event_rules(ruleset)

    # WHEN a meeting and a no-reply organiser's meeting are checked
    meeting = check_event(rules, _event("cfo@acme.example", ["ann@own.example"]))
    no_reply = check_event(rules, _event("noreply@acme.example", ["ann@own.example"]))

    # THEN the switches of mail are off, and the no-reply organiser is dropped by its switch
    assert (rules.switches.automatic_replies, rules.switches.bulk_mail) == (False, False)
    assert (meeting.blocked, no_reply.blocked, no_reply.reason) == (False, True, "no_reply_sender")
