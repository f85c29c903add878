"""Parse and normalise email addresses and domain names, from Graph JSON and raw headers.

Addresses are compared by their normalised form: the local part lower-cased, the domain
lower-cased and converted to its IDNA 2008 ASCII form (UTS #46 mapping), so that
``Jane@BÜCHER.example`` and ``jane@xn--bcher-kva.example`` are the same address.

Raw header values are split with :func:`email.utils.getaddresses` before any RFC 2047
decoding, so a comma inside a quoted or encoded display name never splits an address.

Known limitations: a domain written as an address literal (``user@[192.0.2.1]``) and a
domain that IDNA 2008 forbids (an emoji or an underscore in a label) give no usable address.
A local part is only checked for characters that cannot appear in it; its Unicode
lower-casing can in rare cases join two mailboxes that a server keeps apart. When a raw
header value is malformed, the result follows the running Python's ``getaddresses``: older
3.11 releases may return a fragment of the value as an address, newer ones return nothing.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from email.errors import HeaderParseError, ObsoleteHeaderDefect
from email.header import decode_header, make_header
from email.headerregistry import AddressHeader
from email.utils import getaddresses
from typing import Any, NamedTuple

import idna

from shared.errors import ValidationError

__all__ = [
    "Address",
    "MessageRoles",
    "message_participants",
    "message_recipients",
    "message_roles",
    "message_senders",
    "normalize_domain",
    "parse_address",
    "parse_address_list",
    "parse_recipient_input",
]

DOMAIN_RULE = "must be a domain name such as example.com"
RECIPIENT_RULE = "must be email addresses such as name@example.com, separated by commas"
QUOTE_RULE = 'must quote a display name that contains a comma, as in "Doe, Jane" <jane@example.com>'

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_LOCAL_PART = re.compile(r"[\w!#$%&'*+/=?^`{|}~.-]+|\"(?:[^\"\\\x00-\x1f\x7f]|\\[ -~])*\"")
_MAX_DOMAIN = 253
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_SENDER_FIELDS = ("from", "sender")
_RECIPIENT_FIELDS = ("toRecipients", "ccRecipients", "bccRecipients")
_GRAPH_FIELDS = _SENDER_FIELDS + _RECIPIENT_FIELDS
_SENDER_HEADERS = frozenset({"from", "sender", "resent-from", "resent-sender"})
_RECIPIENT_HEADERS = frozenset({"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"})
_PARTICIPANT_HEADERS = _SENDER_HEADERS | _RECIPIENT_HEADERS
_OPEN_RECIPIENT_FIELDS = ("toRecipients", "ccRecipients")
_OPEN_RECIPIENT_HEADERS = frozenset({"to", "cc", "resent-to", "resent-cc"})


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: a display name and the normalised address.

    Build it with :func:`parse_address` or :func:`parse_address_list`; the constructor itself
    does not normalise.

    Attributes:
        name: the decoded display name, whitespace collapsed; empty when there is none.
        address: ``local@domain`` with the local part lower-cased and the domain in ASCII form.
        domain: the domain part of ``address``.
    """

    name: str
    address: str
    domain: str


def normalize_domain(value: str, field: str = "domain") -> str:
    """Return the lower-case ASCII (IDNA A-label) form of a domain name.

    Args:
        value: a domain as typed or stored, for example ``Bücher.Example.``.
        field: the name reported when the value is rejected.

    Raises:
        ValidationError: the value is not a host name with at least two labels.
    """
    domain = _domain_or_none(value)
    if domain is None:
        raise ValidationError(field, DOMAIN_RULE)
    return domain


def parse_address(value: str) -> Address | None:
    """Parse a single address, with or without a display name; ``None`` when none is usable.

    A value that holds more than one address (``Doe, Jane <jane@example.com>`` unquoted) is
    not a single address and gives ``None`` rather than a guess.
    """
    # Graph's recipient fields hold plain addresses: skip the RFC 5322 parser, which is slow.
    if _PLAIN_ADDRESS.fullmatch(value):
        return _make_address("", value)
    entries = [entry for entry in _split(value) if entry != ("", "")]
    if len(entries) != 1:
        return None
    name, addr_spec = entries[0]
    return _make_address(_decode_name(name), addr_spec)


def parse_address_list(header_value: str) -> list[Address]:
    """Parse a raw address header (To, Cc, ...) into its usable addresses, in order.

    Entries without a usable address are skipped; malformed input never raises.
    """
    found = (_make_address(_decode_name(name), spec) for name, spec in _split(header_value))
    return [address for address in found if address is not None]


def parse_recipient_input(value: str, field: str) -> list[Address]:
    """Parse a recipient list typed by a user, strictly; duplicates are dropped.

    Args:
        value: comma-separated addresses, for example ``"Doe, Jane" <jane@example.com>, b@x.org``.
        field: the name reported when the value is rejected.

    Raises:
        ValidationError: an entry is not a valid address, or an unquoted display name
            contains a comma.
    """
    if any(char in value for char in "\r\n\x00"):
        raise ValidationError(field, RECIPIENT_RULE)

    # NOTE: the header parser reports defects where getaddresses would guess, which is what user
    # input needs; it raises IndexError on some malformed values (for example "jane@").
    parts: dict[str, Any] = {}
    try:
        AddressHeader.parse(value, parts)
    except (HeaderParseError, IndexError, ValueError) as error:
        raise ValidationError(field, RECIPIENT_RULE) from error

    mailboxes = [mailbox for group in parts["groups"] for mailbox in group.addresses]
    parsed = [(str(mailbox.display_name), str(mailbox.addr_spec)) for mailbox in mailboxes]
    # An unquoted "Doe, Jane <jane@x>" parses as a bare "Doe" followed by a named mailbox.
    if any("@" not in spec and name for (_, spec), (name, _) in itertools.pairwise(parsed)):
        raise ValidationError(field, QUOTE_RULE)
    if any(not isinstance(defect, ObsoleteHeaderDefect) for defect in parts["defects"]):
        raise ValidationError(field, RECIPIENT_RULE)

    recipients = [_make_address(name, spec) for name, spec in parsed]
    if any(recipient is None for recipient in recipients):
        raise ValidationError(field, RECIPIENT_RULE)
    return _unique(recipient for recipient in recipients if recipient is not None)


def message_participants(message: Mapping[str, Any]) -> list[Address]:
    """Return the participants of a Graph message: From, Sender, To, Cc and Bcc, deduplicated.

    Reads the Graph recipient fields and, when the message carries them, the raw
    ``internetMessageHeaders`` (From, Sender, To, Cc, Bcc and their Resent- forms). Reply-To
    is not a participant. Unusable entries (empty, legacy Exchange DNs) are skipped.
    """
    return _unique([*_graph_addresses(message), *_header_addresses(message)])


def event_participants(event: Mapping[str, Any]) -> list[Address]:
    """Return the participants of a Graph event: its organiser and attendees, deduplicated."""
    attendees = event.get("attendees")
    found = [_graph_recipient(event.get("organizer"))]
    if isinstance(attendees, list):
        found.extend(_graph_recipient(attendee) for attendee in attendees)
    return _unique(address for address in found if address is not None)


class MessageRoles(NamedTuple):
    """A message's senders, recipients and every participant, each deduplicated."""

    senders: list[Address]
    recipients: list[Address]
    participants: list[Address]


def message_roles(message: Mapping[str, Any]) -> MessageRoles:
    """Return who sent and who received a Graph message, parsing each address once."""
    senders = message_senders(message)
    recipients = message_recipients(message)
    return MessageRoles(senders, recipients, _unique([*senders, *recipients]))


def message_senders(message: Mapping[str, Any]) -> list[Address]:
    """Return who sent a Graph message: From and Sender (and their raw and Resent- headers)."""
    graph = _graph_addresses(message, _SENDER_FIELDS)
    return _unique([*graph, *_header_addresses(message, _SENDER_HEADERS)])


def message_recipients(message: Mapping[str, Any]) -> list[Address]:
    """Return who received a Graph message: To, Cc and Bcc (and their raw and Resent- headers)."""
    graph = _graph_addresses(message, _RECIPIENT_FIELDS)
    return _unique([*graph, *_header_addresses(message, _RECIPIENT_HEADERS)])


def message_open_participants(message: Mapping[str, Any]) -> list[Address]:
    """Return who every copy of a Graph message names: senders, To and Cc, but not Bcc."""
    graph = _graph_addresses(message, _OPEN_RECIPIENT_FIELDS)
    headers = _header_addresses(message, _OPEN_RECIPIENT_HEADERS)
    return _unique([*message_senders(message), *graph, *headers])


def _domain_or_none(value: str) -> str | None:
    """Return the normalised domain, or ``None`` when the value is not a valid host name."""
    text = value.strip().lower()
    # A bound on the cache key: no valid domain comes near it, even in Unicode form.
    if len(text) > 4 * _MAX_DOMAIN:
        return None
    return _normalize_domain_cached(text)


@functools.lru_cache(maxsize=8192)
def _normalize_domain_cached(text: str) -> str | None:
    """Map, convert and validate a stripped, lower-cased domain; cached for repeated senders."""
    if not text.isascii():
        # UTS #46 maps what IDNA 2008 leaves out: upper case, full-width dots, compatibility
        # forms. The standard library codec is IDNA 2003 and turns "faß.de" into "fass.de".
        try:
            text = idna.uts46_remap(text, std3_rules=True)
        except UnicodeError:
            return None

    labels = text.removesuffix(".").split(".")
    ascii_labels = [label for label in map(_ascii_label, labels) if label is not None]
    if len(ascii_labels) < 2 or len(ascii_labels) != len(labels) or ascii_labels[-1].isdigit():
        return None
    domain = ".".join(ascii_labels)
    return domain if len(domain) <= _MAX_DOMAIN else None


def _ascii_label(label: str) -> str | None:
    """Return one label in ASCII form, or ``None`` when it is not a valid host name label."""
    try:
        if not label.isascii():
            label = idna.alabel(label).decode("ascii")
        elif label.startswith("xn--"):
            idna.ulabel(label)
    except UnicodeError:
        return None
    return label if _LABEL.fullmatch(label) else None


def _split(header_value: str) -> list[tuple[str, str]]:
    """Split a raw address header into (name, addr-spec) pairs without decoding it first."""
    try:
        return getaddresses([header_value])
    except (HeaderParseError, IndexError, ValueError):
        return []


def _make_address(name: str, addr_spec: str) -> Address | None:
    """Build a normalised address, or ``None`` when the addr-spec is not usable."""
    local, at, domain = addr_spec.strip().rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local):
        return None

    ascii_domain = _domain_or_none(domain)
    if ascii_domain is None:
        return None
    return Address(" ".join(name.split()), f"{local.lower()}@{ascii_domain}", ascii_domain)


def _decode_name(raw: str) -> str:
    """Decode RFC 2047 encoded words in a display name; never raises."""
    if "=?" not in raw:
        return raw
    try:
        return str(make_header(decode_header(raw)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return _decode_name_leniently(raw)


def _decode_name_leniently(raw: str) -> str:
    """Decode encoded words one by one, replacing bytes an unknown or wrong charset can't map."""
    try:
        chunks = decode_header(raw)
    except (HeaderParseError, ValueError):
        return raw
    return "".join(_decode_chunk(text, charset) for text, charset in chunks)


def _decode_chunk(text: str | bytes, charset: str | None) -> str:
    """Decode one chunk returned by ``decode_header``."""
    if isinstance(text, str):
        return text
    try:
        return text.decode(charset or "ascii", errors="replace")
    except LookupError:
        return text.decode("utf-8", errors="replace")


def _graph_addresses(
    message: Mapping[str, Any], fields: tuple[str, ...] = _GRAPH_FIELDS
) -> Iterator[Address]:
    """Yield the usable addresses of the Graph recipient fields, skipping odd shapes."""
    for field in fields:
        value = message.get(field)
        recipients = [value] if isinstance(value, Mapping) else value
        if not isinstance(recipients, list):
            continue
        for recipient in recipients:
            address = _graph_recipient(recipient)
            if address is not None:
                yield address


def _graph_recipient(recipient: object) -> Address | None:
    """Convert one Graph ``recipient`` object; ``None`` when it holds no usable address."""
    email = recipient.get("emailAddress") if isinstance(recipient, Mapping) else None
    if not isinstance(email, Mapping) or not isinstance(email.get("address"), str):
        return None

    # Graph sometimes returns "Name <addr>" in the address field; parse it as a mailbox.
    address = parse_address(email["address"])
    name = email.get("name")
    if address is None or not isinstance(name, str) or not name.strip():
        return address
    return replace(address, name=" ".join(_decode_name(name).split()))


def _header_addresses(
    message: Mapping[str, Any], names: frozenset[str] = _PARTICIPANT_HEADERS
) -> Iterator[Address]:
    """Yield the addresses of raw participant headers in ``internetMessageHeaders``."""
    headers = message.get("internetMessageHeaders")
    if not isinstance(headers, list):
        return
    for header in headers:
        if not isinstance(header, Mapping):
            continue
        name, value = header.get("name"), header.get("value")
        if isinstance(name, str) and name.strip().lower() in names:
            yield from parse_address_list(value if isinstance(value, str) else "")


def _unique(addresses: Iterable[Address]) -> list[Address]:
    """Drop repeated addresses, keeping the first position and the first non-empty name."""
    found: dict[str, Address] = {}
    for address in addresses:
        known = found.get(address.address)
        if known is None or (not known.name and address.name):
            found[address.address] = address if known is None else replace(known, name=address.name)
    return list(found.values())
