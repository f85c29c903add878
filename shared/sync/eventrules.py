"""Blocking rules for calendar events: the tenant's and the user's rules, read as for mail.

An event is judged like a message whose sender is its organiser and whose recipients are its
attendees: a participant condition on ``sender`` looks at the organiser, one on ``recipient``
at the attendees, ``any`` at both. Content conditions look at the subject and, where Graph gave
it, the event body (``subject``, ``body``, ``subjectOrBody``). Of the switches only
``noReplySenders`` (a no-reply organiser) applies; automatic replies and bulk mail are kinds of
mail, so those switches are off for events whatever the tenant set. ``internalOnly`` is the
company match's business (an internal meeting is dropped before rules are looked at).

Known limitations: an occurrence that comes without a body (legacy delta answers give bare
occurrences) is checked against its series' subject and participants only, so a phrase found
only in the series' body does not block it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from shared.matching.addresses import MessageRoles, event_participants
from shared.rules.engine import CompiledRules, MessageFacts

if TYPE_CHECKING:
    from collections.abc import Mapping

    from shared.rules.engine import Verdict
    from shared.rules.model import RuleSet


def event_rules(ruleset: RuleSet) -> CompiledRules:
    """Compile a calendar's rule set, with the switches that only make sense for mail off."""
    switches = replace(ruleset.switches, automatic_replies=False, bulk_mail=False)
    return CompiledRules(replace(ruleset, switches=switches))


def event_facts(event: Mapping[str, Any]) -> MessageFacts:
    """Read what rules look at in a Graph event: organiser, attendees, subject, body."""
    senders = event_participants({"organizer": event.get("organizer")})
    recipients = event_participants({"attendees": event.get("attendees")})
    roles = MessageRoles(senders, recipients, [*senders, *recipients])
    shape = {"subject": event.get("subject"), "body": event.get("body")}
    return MessageFacts.of(shape, roles)


def check_event(rules: CompiledRules, event: Mapping[str, Any]) -> Verdict:
    """Return whether a switch or rule blocks a (series-filled) Graph event."""
    return rules.check(event_facts(event))
