"""Unit tests for shared.matching.addresses."""

from __future__ import annotations

import pytest

from shared.errors import ValidationError
from shared.matching.addresses import (
    Address,
    message_participants,
    normalize_domain,
    parse_address,
    parse_address_list,
    parse_recipient_input,
)


def test_normalize_domain_lowercases_and_drops_trailing_dot():
    """A domain is stripped, lower-cased and loses its trailing dot."""
    # GIVEN a domain typed with spaces, upper case and a root dot
    value = "  Customer.EXAMPLE. "

    # WHEN it is normalised
    domain = normalize_domain(value)

    # THEN the canonical form comes back
    assert domain == "customer.example"


@pytest.mark.parametrize(
    "value", ["bücher.example", "BÜCHER.example", "xn--bcher-kva.example", "XN--BCHER-KVA.Example"]
)
def test_normalize_domain_converts_idn_to_a_label(value):
    """Unicode and ASCII forms of an internationalised domain give the same A-label."""
    # GIVEN one of the spellings of bücher.example
    # WHEN it is normalised
    domain = normalize_domain(value)

    # THEN it is the lower-case A-label
    assert domain == "xn--bcher-kva.example"


def test_normalize_domain_follows_idna_2008_for_sharp_s():
    """A German sharp s is kept as its own A-label, as IDNA 2008 registries use it."""
    # GIVEN a domain with "ß", which IDNA 2003 would rewrite to "ss"
    value = "faß.de"

    # WHEN it is normalised
    domain = normalize_domain(value)

    # THEN it is not confused with fass.de
    assert domain == "xn--fa-hia.de"


def test_normalize_domain_accepts_hyphens_inside_ascii_labels():
    """An ASCII label with two hyphens inside is a valid host name."""
    # GIVEN a domain with "--" in its first label
    # WHEN it is normalised
    domain = normalize_domain("ab--cd.example")

    # THEN it is kept as given
    assert domain == "ab--cd.example"


@pytest.mark.parametrize(
    "value",
    [
        "not a domain",
        "http://x.com",
        "a@b.com",
        "",
        "   ",
        ".com",
        "com",
        "example..com",
        "-acme.example",
        "acme-.example",
        "exa_mple.com",
        "192.0.2.1",
        "xn--zz.example",
        "a" * 64 + ".example",
        ".".join(["abcdefghi"] * 26),
        "a." * 600 + "example",
    ],
)
def test_normalize_domain_rejects_invalid_values_naming_the_field(value):
    """A value that is not a host name with two labels raises naming the given field."""
    # GIVEN an invalid domain and a field path
    # WHEN it is normalised
    with pytest.raises(ValidationError) as caught:
        normalize_domain(value, "domains[2]")

    # THEN the error names the field and the rule
    assert caught.value.field == "domains[2]"
    assert caught.value.rule == "must be a domain name such as example.com"


def test_parse_address_list_keeps_quoted_display_name_with_commas():
    """A quoted Outlook-style name with commas stays one address (BR-10 input 1)."""
    # GIVEN a raw header with a quoted name containing two commas, and a second address
    header = '"Doe, Jane - City, ST" <Jane.Doe@Customer.EXAMPLE>, ops@customer.example'

    # WHEN it is parsed
    addresses = parse_address_list(header)

    # THEN exactly two normalised addresses come back
    assert addresses == [
        Address("Doe, Jane - City, ST", "jane.doe@customer.example", "customer.example"),
        Address("", "ops@customer.example", "customer.example"),
    ]


def test_parse_address_list_decodes_encoded_comma_after_splitting():
    """An encoded comma in a display name does not split the address (BR-10 input 2)."""
    # GIVEN a raw header whose name is an RFC 2047 word holding "=2C"
    header = "=?utf-8?q?Doe=2C_John?= <john@customer.example>"

    # WHEN it is parsed
    addresses = parse_address_list(header)

    # THEN one address comes back with the decoded name
    assert addresses == [Address("Doe, John", "john@customer.example", "customer.example")]


def test_parse_address_list_decodes_names_in_other_charsets():
    """Encoded words in ISO-8859-1, Windows-1252 and GB2312 decode to text."""
    # GIVEN names encoded in three charsets, one of them base64
    header = (
        "=?iso-8859-1?q?M=FCller=2C_J=F6rg?= <j.mueller@kunde.example>, "
        "=?windows-1252?q?=93Ops=94?= <ops@kunde.example>, "
        "=?gb2312?b?1uXOxA==?= <wen@kunde.example>"
    )

    # WHEN it is parsed
    names = [address.name for address in parse_address_list(header)]

    # THEN every name is decoded with its own charset
    assert names == ["Müller, Jörg", "\u201cOps\u201d", "皱文"]


def test_parse_address_list_survives_broken_encoded_words():
    """An unknown charset or undecodable bytes keep the address with a best-effort name."""
    # GIVEN one name in an unknown charset and one with bytes that are not UTF-8
    header = "=?x-unknown?q?abc?= <a@kunde.example>, =?utf-8?q?bad=FF?= <b@kunde.example>"

    # WHEN it is parsed
    addresses = parse_address_list(header)

    # THEN both addresses come back and the names are readable text
    assert [address.address for address in addresses] == ["a@kunde.example", "b@kunde.example"]
    assert addresses[0].name == "abc"
    assert addresses[1].name.startswith("bad")


def test_parse_address_list_unfolds_header_lines():
    """A folded raw header value parses like the unfolded one."""
    # GIVEN a header value folded over three lines
    header = '"Doe, Jane"\r\n <jane@customer.example>,\r\n\tops@customer.example'

    # WHEN it is parsed
    addresses = parse_address_list(header)

    # THEN both addresses come back
    assert [address.address for address in addresses] == [
        "jane@customer.example",
        "ops@customer.example",
    ]


@pytest.mark.parametrize(
    "header",
    ["", "undisclosed-recipients:;", "<>", "foo", "a@b@c", "x@", "@x.example", "a@[192.0.2.1]"],
)
def test_parse_address_list_skips_entries_without_usable_address(header):
    """Empty, group-only and malformed values give no address and raise nothing."""
    # GIVEN a header value without a usable address
    # WHEN it is parsed
    addresses = parse_address_list(header)

    # THEN the result is empty
    assert addresses == []


def test_parse_address_list_normalises_idn_domain():
    """A Unicode domain in a raw header is stored in its A-label form."""
    # GIVEN an address at bücher.example
    # WHEN it is parsed
    addresses = parse_address_list("Ute <Ute@Bücher.example>")

    # THEN the local part is lower-cased and the domain converted
    assert addresses == [Address("Ute", "ute@xn--bcher-kva.example", "xn--bcher-kva.example")]


def test_parse_address_reads_bare_and_named_addresses():
    """A single address is parsed with or without a display name."""
    # GIVEN a bare address with spaces and a named one
    # WHEN each is parsed
    bare = parse_address("  JANE@Customer.Example ")
    named = parse_address('"Doe, Jane" <jane@customer.example>')

    # THEN both give the same normalised address
    assert bare == Address("", "jane@customer.example", "customer.example")
    assert named == Address("Doe, Jane", "jane@customer.example", "customer.example")


@pytest.mark.parametrize(
    "value",
    ["", "Doe, Jane <jane@customer.example>", "a@x.example, b@y.example", "/O=EXCHANGELABS/OU=X"],
)
def test_parse_address_returns_none_without_exactly_one_address(value):
    """Nothing, several addresses or a legacy Exchange DN give None rather than a guess."""
    # GIVEN a value that is not exactly one usable address
    # WHEN it is parsed
    address = parse_address(value)

    # THEN there is no address
    assert address is None


def test_parse_address_keeps_quoted_local_part():
    """A quoted local part is kept as given, lower-cased."""
    # GIVEN an address whose local part is a quoted string
    # WHEN it is parsed
    address = parse_address('"John Doe"@Customer.example')

    # THEN the quotes stay and the address is usable
    assert address == Address("", '"john doe"@customer.example', "customer.example")


def test_parse_recipient_input_accepts_quoted_name_with_comma():
    """A quoted display name with a comma gives one recipient."""
    # GIVEN a user-typed list with a quoted name and a bare address
    value = '"Doe, Jane" <jane.doe@customer.example>, ops@customer.example'

    # WHEN it is parsed
    recipients = parse_recipient_input(value, "to")

    # THEN two recipients come back, the first with its full name
    assert recipients == [
        Address("Doe, Jane", "jane.doe@customer.example", "customer.example"),
        Address("", "ops@customer.example", "customer.example"),
    ]


def test_parse_recipient_input_asks_for_quotes_around_unquoted_comma_name():
    """An unquoted name with a comma raises asking for quotes (BR-10 input 3)."""
    # GIVEN the Outlook-style name typed without quotes
    value = "Doe, Jane <jane.doe@customer.example>"

    # WHEN it is parsed
    with pytest.raises(ValidationError) as caught:
        parse_recipient_input(value, "cc")

    # THEN the error names the field and asks for quotes, never giving "Doe" and "Jane <...>"
    assert caught.value.field == "cc"
    assert "quote" in caught.value.rule


@pytest.mark.parametrize(
    "value",
    [
        "jane@",
        "jane",
        "jane@x.example, bob",
        "alice@example.com <bob@example.com>",
        "a@x.example; b@y.example",
        "Jane <jane@[192.0.2.1]>",
        "Jane <jane@x.example",
        "a@x.example\r\nBcc: evil@x.example",
        "jane@exa_mple.com",
    ],
)
def test_parse_recipient_input_rejects_invalid_addresses_naming_the_field(value):
    """Every malformed or ambiguous entry raises a validation error naming the field."""
    # GIVEN a user-typed list that is not a clean list of addresses
    # WHEN it is parsed
    with pytest.raises(ValidationError) as caught:
        parse_recipient_input(value, "to")

    # THEN the field is named
    assert caught.value.field == "to"


def test_parse_recipient_input_drops_duplicates_and_empty_entries():
    """Repeated addresses and stray commas collapse to one recipient each."""
    # GIVEN a list with a duplicate in other case, an empty entry and an IDN domain
    value = "jane@customer.example,, JANE@Customer.example, ute@bücher.example,"

    # WHEN it is parsed
    recipients = parse_recipient_input(value, "to")

    # THEN each address appears once, normalised
    assert [recipient.address for recipient in recipients] == [
        "jane@customer.example",
        "ute@xn--bcher-kva.example",
    ]


def test_parse_recipient_input_returns_empty_list_for_empty_value():
    """An empty value is an empty list; the caller decides whether one is required."""
    # GIVEN an empty field
    # WHEN it is parsed
    recipients = parse_recipient_input("", "bcc")

    # THEN no recipient and no error
    assert recipients == []


def test_message_participants_reads_graph_fields_but_not_reply_to():
    """From, Sender, To, Cc and Bcc are participants; Reply-To is not."""
    # GIVEN a Graph message with every recipient field filled
    message = {
        "from": {"emailAddress": {"name": "Ann", "address": "ann@vendor.example"}},
        "sender": {"emailAddress": {"name": "Assistant", "address": "pa@vendor.example"}},
        "toRecipients": [{"emailAddress": {"name": "Cli", "address": "cli@customer.example"}}],
        "ccRecipients": [{"emailAddress": {"name": "", "address": "cc@customer.example"}}],
        "bccRecipients": [{"emailAddress": {"address": "bcc@partner.example"}}],
        "replyTo": [{"emailAddress": {"address": "noreply@elsewhere.example"}}],
    }

    # WHEN its participants are read
    addresses = [address.address for address in message_participants(message)]

    # THEN the five participants come back in field order
    assert addresses == [
        "ann@vendor.example",
        "pa@vendor.example",
        "cli@customer.example",
        "cc@customer.example",
        "bcc@partner.example",
    ]


def test_message_participants_normalises_and_skips_odd_graph_values():
    """Upper case, whitespace, a comma name, empty and Exchange DN addresses never crash."""
    # GIVEN Graph recipients as seen in the wild
    message = {
        "from": {"emailAddress": {"name": "Doe, Jane", "address": " Jane.Doe@CUSTOMER.example "}},
        "sender": None,
        "toRecipients": [
            {"emailAddress": {"name": "Nobody", "address": ""}},
            {"emailAddress": {"name": "Legacy", "address": "/O=EXCHANGELABS/OU=EXCHANGE/CN=X"}},
            {"emailAddress": {"name": None, "address": None}},
            {"emailAddress": "not an object"},
            "not a recipient",
            {"emailAddress": {"name": "Roe", "address": '"Roe, Rich" <rich@partner.example>'}},
        ],
        "ccRecipients": {"unexpected": "shape"},
    }

    # WHEN its participants are read
    addresses = message_participants(message)

    # THEN only the two usable addresses come back, normalised, with Graph's names
    assert addresses == [
        Address("Doe, Jane", "jane.doe@customer.example", "customer.example"),
        Address("Roe", "rich@partner.example", "partner.example"),
    ]


def test_message_participants_adds_raw_header_addresses():
    """Raw participant headers add addresses Graph's fields do not show; others are ignored."""
    # GIVEN a message whose raw headers carry a Cc and a Resent-To, plus Reply-To and Subject
    message = {
        "from": {"emailAddress": {"name": "Ann", "address": "ann@vendor.example"}},
        "internetMessageHeaders": [
            {"name": "From", "value": "Ann <ANN@vendor.example>"},
            {"name": "Cc", "value": '"Doe, Jane - City, ST" <Jane.Doe@Customer.EXAMPLE>'},
            {"name": "resent-to", "value": "=?utf-8?q?Doe=2C_John?= <john@customer.example>"},
            {"name": "Reply-To", "value": "noreply@elsewhere.example"},
            {"name": "Subject", "value": "hello@subject.example"},
            {"name": "To", "value": None},
            "not a header",
        ],
    }

    # WHEN its participants are read
    addresses = message_participants(message)

    # THEN the header addresses are added once, with decoded names
    assert addresses == [
        Address("Ann", "ann@vendor.example", "vendor.example"),
        Address("Doe, Jane - City, ST", "jane.doe@customer.example", "customer.example"),
        Address("Doe, John", "john@customer.example", "customer.example"),
    ]


def test_message_participants_deduplicates_keeping_first_name_given():
    """One address seen twice appears once, at its first place, with the first non-empty name."""
    # GIVEN the same address nameless in From and named in To
    message = {
        "from": {"emailAddress": {"name": "", "address": "cli@customer.example"}},
        "toRecipients": [
            {"emailAddress": {"name": "Ann", "address": "ann@vendor.example"}},
            {"emailAddress": {"name": "Client", "address": "CLI@customer.example"}},
        ],
    }

    # WHEN its participants are read
    addresses = message_participants(message)

    # THEN the client appears once, first, with the name found later
    assert addresses == [
        Address("Client", "cli@customer.example", "customer.example"),
        Address("Ann", "ann@vendor.example", "vendor.example"),
    ]


def test_message_participants_returns_empty_list_for_empty_message():
    """A message without participant fields has no participants."""
    # GIVEN an empty Graph message
    # WHEN its participants are read
    addresses = message_participants({})

    # THEN the list is empty
    assert addresses == []
