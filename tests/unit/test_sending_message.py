"""Checks of an email to send: recipients, attachments, the tenant's size limit, Graph's 4 MB."""

from __future__ import annotations

import base64

import pytest

from shared.errors import ValidationError
from shared.sending.message import (
    MB,
    Kind,
    TooLargeError,
    decode_email,
    encode_email,
    parse_email,
)


def _file(size: int, name: str = "a.pdf") -> dict[str, str]:
    content = base64.b64encode(b"x" * size).decode("ascii")
    return {"name": name, "contentType": "application/pdf", "contentBytes": content}


def test_parse_email_reads_recipients_with_commas_in_names():
    """BR-10: a quoted display name with a comma is one recipient."""
    # GIVEN a body whose recipient has "Doe, Jane" quoted
    body = {"to": ['"Doe, Jane" <Jane.Doe@Customer.EXAMPLE>', "ops@customer.example"]}

    # WHEN it is parsed
    email = parse_email({**body, "subject": "Hi", "html": "<p>x</p>"})

    # THEN there are two recipients, normalised
    assert [a.address for a in email.to] == ["jane.doe@customer.example", "ops@customer.example"]
    assert email.kind is Kind.MANUAL


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"subject": "no one"}, "to"),
        ({"to": ["not-an-address"]}, "to[0]"),
        ({"to": ["a@x.example"], "cc": ["Doe, Jane <jane@x.example>"]}, "cc[0]"),
        ({"to": "a@x.example"}, "to"),
        ({"to": ["a@x.example"], "kind": "robot"}, "kind"),
        (
            {"to": ["a@x.example"], "attachments": [{"name": "a", "contentBytes": "!!"}]},
            "attachments[0].contentBytes",
        ),
        ({"to": ["a@x.example"], "attachments": [{"contentBytes": "eA=="}]}, "attachments[0].name"),
        ({"to": ["a@x.example"], "colour": "red"}, "colour"),
    ],
)
def test_parse_email_names_the_bad_field(body, field):
    """Bad input is refused with the field it concerns."""
    # GIVEN / WHEN a bad body is parsed
    with pytest.raises(ValidationError) as caught:
        parse_email(body)

    # THEN the error names the field
    assert caught.value.field == field


def test_size_limit_counts_raw_bytes_of_body_and_attachments():
    """BR-09 case C: 0.1 MB body and 4 x 2 MB attachments are over 8 MB, raw."""
    # GIVEN case C
    attachments = [_file(2 * MB, f"f{i}.pdf") for i in range(4)]
    email = parse_email(
        {"to": ["a@x.example"], "html": "x" * int(0.1 * MB), "attachments": attachments}
    )

    # WHEN it is checked against 8 MB
    with pytest.raises(TooLargeError) as caught:
        email.check_size(8 * MB)

    # THEN it is refused on the raw total, though each request would fit
    assert caught.value.field == "body"
    assert email.raw_bytes == int(0.1 * MB) + 8 * MB


def test_size_check_refuses_a_body_no_draft_request_can_carry():
    """BR-09 case D: a 4.2 MB body fits the 8 MB limit but no 4 MB Graph request."""
    # GIVEN case D
    email = parse_email({"to": ["a@x.example"], "html": "x" * int(4.2 * MB)})

    # WHEN / THEN it is refused naming html
    with pytest.raises(TooLargeError) as caught:
        email.check_size(8 * MB)
    assert caught.value.field == "html"


def test_case_a_passes_the_size_checks():
    """BR-09 case A: 1.2 MB body, 2.9 MB and 3.6 MB attachments fit an 8 MB limit."""
    # GIVEN case A
    files = [_file(int(2.9 * MB), "a.pdf"), _file(int(3.6 * MB), "b.xlsx")]
    email = parse_email({"to": ["a@x.example"], "html": "x" * int(1.2 * MB), "attachments": files})

    # WHEN / THEN it passes
    email.check_size(8 * MB)


def test_encode_and_decode_round_trip():
    """The payload blob gives back the same email."""
    # GIVEN an email with every part
    email = parse_email(
        {
            "to": ['"Doe, Jane" <jane@x.example>'],
            "bcc": ["b@y.example"],
            "subject": "S",
            "html": "<p>é</p>",
            "kind": "automatic",
            "attachments": [_file(10)],
        }
    )

    # WHEN it is encoded and decoded
    again = decode_email(encode_email(email))

    # THEN nothing is lost that Graph needs
    assert again.draft_json() == email.draft_json()
    assert again.attachments == email.attachments
    assert again.kind is Kind.AUTOMATIC


def test_check_size_refuses_an_attachment_no_graph_request_takes():
    """A file just under 3 MB is too big inline (base64) and too small for an upload session."""
    # GIVEN an email whose one attachment is 100 bytes under 3 MB, with a long name
    body = {"to": ["a@x.example"], "attachments": [_file(3 * MB - 100, "n" * 200 + ".pdf")]}
    email = parse_email(body)

    # WHEN its size is checked against an 8 MB tenant limit / THEN the attachment is named
    with pytest.raises(TooLargeError) as caught:
        email.check_size(8 * MB)
    assert caught.value.field == "attachments[0]"


def test_check_size_counts_the_draft_as_the_worker_sends_it():
    """The outbox marker and a reply's wrapper count toward the draft's 4 MB."""
    # GIVEN a body whose bare draft is a few bytes under 4 MB, as a new email and as a reply
    html = "x" * (4 * MB - 200)
    plain = parse_email({"to": ["a@x.example"], "html": html})
    reply = parse_email({"to": ["a@x.example"], "html": html, "replyTo": "0" * 64})

    # WHEN each is checked / THEN both are refused as too large for the draft request
    for email in (plain, reply):
        with pytest.raises(TooLargeError) as caught:
            email.check_size(8 * MB)
        assert caught.value.field == "html"


@pytest.mark.parametrize(
    ("attachment", "field"),
    [
        ({"name": "../../etc/passwd"}, "attachments[0].name"),
        ({"name": "a\\b.txt"}, "attachments[0].name"),
        ({"name": "evil\r\nX-Header: 1.txt"}, "attachments[0].name"),
        ({"name": ".."}, "attachments[0].name"),
        ({"contentType": "text/plain\r\nBcc: x@y.example"}, "attachments[0].contentType"),
    ],
)
def test_attachment_names_and_types_cannot_carry_paths_or_headers(attachment, field):
    """A file name with folders or control characters, or a media type with a line break."""
    item = {**_file(10), **attachment}
    with pytest.raises(ValidationError) as caught:
        parse_email({"to": ["a@x.example"], "attachments": [item]})
    assert caught.value.field == field


def test_a_recipient_named_twice_is_sent_to_once():
    """Entries naming the same address in any case make one recipient."""
    email = parse_email(
        {"to": ["a@x.example", "A <A@X.example>", "b@x.example, a@x.example"], "html": "x"}
    )
    assert [a.address for a in email.to] == ["a@x.example", "b@x.example"]
