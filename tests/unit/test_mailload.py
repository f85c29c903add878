"""Unit tests for devstack.mailload: raw RFC 5322 mail to Graph message JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from devstack.mailheaders import FALLBACK_DATETIME
from devstack.mailload import (
    LoadFailure,
    MailLoadError,
    graph_message_from_eml,
    iter_mail_files,
    load_directory,
)

if TYPE_CHECKING:
    from pathlib import Path

BASE = {
    "From": "Jane Doe <jane@customer.example>",
    "To": "alex@contoso.example",
    "Subject": "Quote",
    "Date": "Tue, 03 Mar 2026 10:15:00 +0100",
    "Message-ID": "<q1@customer.example>",
}


def eml(body: str = "Hello.\r\n", **headers: str | None) -> bytes:
    """Build raw mail from BASE headers; a keyword replaces one (underscores for dashes)."""
    merged = dict(BASE)
    for key, value in headers.items():
        merged[key.replace("_", "-")] = value
    lines = [f"{name}: {value}" for name, value in merged.items() if value is not None]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8")


def addresses(recipients: list[dict]) -> list[tuple[str, str]]:
    return [(r["emailAddress"]["name"], r["emailAddress"]["address"]) for r in recipients]


def test_graph_message_from_eml_keeps_commas_inside_quoted_names() -> None:
    """A quoted display name with commas stays one recipient (CASES.md BR-10, input 1)."""
    # GIVEN an Outlook-style "Last, First - City, ST" name next to a bare address
    raw = eml(To='"Doe, Jane - City, ST" <Jane.Doe@Customer.EXAMPLE>, ops@customer.example')

    # WHEN it is converted
    message = graph_message_from_eml(raw)

    # THEN there are exactly two recipients, the first with its full name and original case
    assert addresses(message["toRecipients"]) == [
        ("Doe, Jane - City, ST", "Jane.Doe@Customer.EXAMPLE"),
        ("ops@customer.example", "ops@customer.example"),
    ]


def test_graph_message_from_eml_decodes_names_after_splitting() -> None:
    """An encoded comma (=2C) in a name never splits the address (CASES.md BR-10, input 2)."""
    # GIVEN a Cc whose RFC 2047 name contains an encoded comma
    raw = eml(Cc="=?utf-8?q?Doe=2C_John?= <john@customer.example>")

    # WHEN it is converted
    message = graph_message_from_eml(raw)

    # THEN one recipient comes back, with the decoded name
    assert addresses(message["ccRecipients"]) == [("Doe, John", "john@customer.example")]


def test_graph_message_from_eml_keeps_idn_domains_as_written() -> None:
    """IDN domains in Unicode (raw UTF-8 header) and punycode forms pass through unchanged."""
    # GIVEN a To header with both forms and a non-ASCII name
    raw = eml(To="Zoë Ångström <anna@bücher.example>, anna@xn--bcher-kva.example")

    # WHEN it is converted
    message = graph_message_from_eml(raw)

    # THEN both addresses keep the form the sender wrote
    assert addresses(message["toRecipients"]) == [
        ("Zoë Ångström", "anna@bücher.example"),
        ("anna@xn--bcher-kva.example", "anna@xn--bcher-kva.example"),
    ]


def test_graph_message_from_eml_drops_entries_without_an_address() -> None:
    """Groups without members and fragments without ``@`` are not recipients."""
    # GIVEN an empty group and an unquoted comma name that getaddresses splits
    raw = eml(To="undisclosed-recipients:;", Cc="Doe, Jane <jane.doe@customer.example>")

    # WHEN it is converted
    message = graph_message_from_eml(raw)

    # THEN only the usable address is left
    assert message["toRecipients"] == []
    assert addresses(message["ccRecipients"]) == [("Jane", "jane.doe@customer.example")]


def test_graph_message_from_eml_uses_sender_header_for_sender() -> None:
    """``sender`` comes from Sender when present and from From otherwise."""
    # GIVEN a delegate-sent message and a normal one
    delegated = eml(Sender="Assistant <pa@customer.example>")

    # WHEN both are converted
    with_sender, plain = graph_message_from_eml(delegated), graph_message_from_eml(eml())

    # THEN the delegate shows as sender only in the first one
    assert with_sender["sender"]["emailAddress"]["address"] == "pa@customer.example"
    assert with_sender["from"]["emailAddress"]["address"] == "jane@customer.example"
    assert plain["sender"] == plain["from"]


def test_graph_message_from_eml_strips_message_id_whitespace() -> None:
    """internetMessageId keeps angle brackets and loses surrounding whitespace."""
    # GIVEN a Message-ID folded onto a continuation line
    raw = eml(Message_ID="\r\n  <q1@customer.example>  ")

    # WHEN it is converted
    message = graph_message_from_eml(raw)

    # THEN the id is trimmed but otherwise untouched
    assert message["internetMessageId"] == "<q1@customer.example>"


def test_graph_message_from_eml_omits_missing_message_id() -> None:
    """Without a Message-ID the key is absent and the conversation id is still repeatable."""
    # GIVEN a message without Message-ID
    raw = eml(Message_ID=None)

    # WHEN it is converted twice
    first, second = graph_message_from_eml(raw), graph_message_from_eml(raw)

    # THEN there is no internetMessageId and the conversation id is stable
    assert "internetMessageId" not in first
    assert first["conversationId"] == second["conversationId"]


def test_graph_message_from_eml_groups_a_thread_by_its_root() -> None:
    """A reply gets the conversation id of the message its References start with."""
    # GIVEN a root message, a reply with References, and one with only In-Reply-To
    root = eml()
    reply = eml(
        Message_ID="<r2@contoso.example>",
        In_Reply_To="<r1@contoso.example>",
        References="<q1@customer.example>\r\n <r1@contoso.example>",
    )
    loose = eml(Message_ID="<r3@contoso.example>", In_Reply_To="<q1@customer.example>")

    # WHEN all three are converted
    ids = {graph_message_from_eml(raw)["conversationId"] for raw in (root, reply, loose)}

    # THEN they share one opaque conversation id
    assert len(ids) == 1
    assert ids.pop().startswith("AAQk")


def test_graph_message_from_eml_converts_dates_to_utc() -> None:
    """sentDateTime is Date in UTC; receivedDateTime is the newest Received hop."""
    # GIVEN two Received hops where the newest is not the topmost one
    raw = eml(Received="from a by mx.contoso.example; Tue, 3 Mar 2026 09:15:40 +0000")
    raw = b"Received: from b by c; Tue, 03 Mar 2026 09:15:07 +0000\r\n" + raw

    # WHEN it is converted
    message = graph_message_from_eml(raw)

    # THEN both times are ISO 8601 UTC with Z
    assert message["sentDateTime"] == "2026-03-03T09:15:00Z"
    assert message["receivedDateTime"] == "2026-03-03T09:15:40Z"


def test_graph_message_from_eml_falls_back_on_bad_dates() -> None:
    """An unparseable Date uses the Received date, and no date at all the fixed fallback."""
    # GIVEN one message with a broken Date and a Received hop, one with neither
    hop = "from a by b; Wed, 04 Mar 2026 08:00:00 -0500"
    broken = eml(Date="next Tuesday-ish", Received=hop)
    undated = eml(Date=None)

    # WHEN both are converted
    with_hop, without = graph_message_from_eml(broken), graph_message_from_eml(undated)

    # THEN the hop stands in for Date, and the fallback for everything
    assert with_hop["sentDateTime"] == with_hop["receivedDateTime"] == "2026-03-04T13:00:00Z"
    assert without["sentDateTime"] == without["receivedDateTime"] == FALLBACK_DATETIME


def test_graph_message_from_eml_decodes_subject_and_defaults_to_empty() -> None:
    """Encoded-word subjects are decoded, and a missing Subject becomes an empty string."""
    # GIVEN an encoded subject split over two encoded words, and no subject
    encoded = eml(Subject="=?utf-8?q?Lieferung_nach_M=C3=BC?=\r\n =?utf-8?q?nchen?=")

    # WHEN both are converted
    subject = graph_message_from_eml(encoded)["subject"]
    missing = graph_message_from_eml(eml(Subject=None))["subject"]

    # THEN the text is decoded and the missing one is empty
    assert subject == "Lieferung nach München"
    assert missing == ""


def test_graph_message_from_eml_keeps_raw_headers_unfolded() -> None:
    """internetMessageHeaders hold every header with its raw, unfolded value."""
    # GIVEN a folded, encoded To header
    raw = eml(To="=?utf-8?q?Doe=2C_John?=\r\n <john@customer.example>")

    # WHEN it is converted
    headers = graph_message_from_eml(raw)["internetMessageHeaders"]

    # THEN the value is raw (still encoded) with the line break removed
    assert {"name": "To", "value": "=?utf-8?q?Doe=2C_John?= <john@customer.example>"} in headers
    assert [h["name"] for h in headers] == [*BASE]


def test_graph_message_from_eml_prefers_html_alternative() -> None:
    """The HTML part of multipart/alternative is the body; the preview is its visible text."""
    # GIVEN a plain and an HTML alternative
    body = (
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain\r\n"
        "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        "<html><head><style>p{}</style></head><body><p>Gr&uuml;&szlig;e,</p>"
        "<p>see   you</p></body></html>\r\n--b--\r\n"
    )
    raw = eml(body, Content_Type='multipart/alternative; boundary="b"')

    # WHEN it is converted
    message = graph_message_from_eml(raw)

    # THEN the body is HTML and the preview is whitespace-collapsed text
    assert message["body"]["contentType"] == "html"
    assert "<p>see   you</p>" in message["body"]["content"]
    assert message["bodyPreview"] == "Grüße, see you"
    assert message["hasAttachments"] is False


def test_graph_message_from_eml_limits_preview_to_255_characters() -> None:
    """bodyPreview is at most 255 characters of plain text."""
    # GIVEN a long plain-text body
    raw = eml("word " * 200)

    # WHEN it is converted
    message = graph_message_from_eml(raw)

    # THEN the body is text and the preview is cut
    assert message["body"]["contentType"] == "text"
    assert len(message["bodyPreview"]) == 255


def test_graph_message_from_eml_flags_attachments_but_not_inline_parts() -> None:
    """A PDF attachment sets hasAttachments; an inline image in multipart/related does not."""
    # GIVEN one message with an attached PDF and one with only a related inline image
    attached = eml(
        "--m\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        "--m\r\nContent-Type: application/pdf\r\n"
        'Content-Disposition: attachment; filename="q.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--m--\r\n",
        Content_Type='multipart/mixed; boundary="m"',
    )
    inline = eml(
        '--r\r\nContent-Type: text/html\r\n\r\n<img src="cid:logo">\r\n'
        "--r\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\n\r\nPNG\r\n--r--\r\n",
        Content_Type='multipart/related; boundary="r"',
    )

    # WHEN both are converted
    with_pdf, with_logo = graph_message_from_eml(attached), graph_message_from_eml(inline)

    # THEN only the PDF counts
    assert with_pdf["hasAttachments"] is True
    assert with_pdf["body"] == {"contentType": "text", "content": "see attached"}
    assert with_logo["hasAttachments"] is False


def test_graph_message_from_eml_survives_a_bad_charset() -> None:
    """An unknown declared charset falls back to UTF-8, then to Windows-1252."""
    # GIVEN UTF-8 text declared as a charset that does not exist, and Latin-1 bytes as UTF-8
    bogus = eml("Grüße", Content_Type="text/plain; charset=x-no-such-charset")
    latin = eml(Content_Type="text/plain; charset=utf-8").replace(
        b"Hello.", "Grüße".encode("latin-1")
    )

    # WHEN both are converted
    first, second = graph_message_from_eml(bogus), graph_message_from_eml(latin)

    # THEN both bodies are readable text
    assert first["body"]["content"] == "Grüße"
    assert second["body"]["content"].startswith("Grüße")


def test_graph_message_from_eml_survives_non_utf8_header_bytes() -> None:
    """Latin-1 bytes in headers are read as Windows-1252 and the result is valid JSON."""
    # GIVEN a From header with a raw Latin-1 byte
    raw = eml().replace(b"Jane Doe", "Jürgen Doe".encode("latin-1"))

    # WHEN it is converted
    message = graph_message_from_eml(raw)

    # THEN the name is readable and the message serialises
    assert message["from"]["emailAddress"]["name"] == "Jürgen Doe"
    json.dumps(message, ensure_ascii=False).encode("utf-8")


def test_graph_message_from_eml_survives_a_broken_mime_boundary() -> None:
    """A boundary parameter that breaks the MIME parser still yields a text message."""
    # GIVEN an RFC 2231 boundary holding a byte that is not valid in its charset
    raw = eml("--x\r\n\r\nbody\r\n", Content_Type="multipart/mixed; boundary*=utf-8''%FF")
    raw = raw.replace(b"%FF", b"\xff")

    # WHEN it is converted
    message = graph_message_from_eml(raw)

    # THEN the headers are mapped and the body is kept as text
    assert message["internetMessageId"] == "<q1@customer.example>"
    assert message["body"]["contentType"] == "text"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Importance": "High"}, "high"),
        ({"X-Priority": "5 (Lowest)"}, "low"),
        ({"X-Priority": "3"}, "normal"),
        ({}, "normal"),
    ],
)
def test_graph_message_from_eml_maps_importance(headers: dict[str, str], expected: str) -> None:
    """Importance and X-Priority map to Graph's low/normal/high."""
    # GIVEN a message with the given priority headers
    raw = eml(**{name.replace("-", "_"): value for name, value in headers.items()})

    # WHEN it is converted
    message = graph_message_from_eml(raw)

    # THEN the importance matches and the fixed flags are set
    assert message["importance"] == expected
    assert (message["isDraft"], message["isRead"]) == (False, True)


def test_graph_message_from_eml_rejects_input_without_headers() -> None:
    """Bytes with no header block are not mail."""
    # GIVEN a body-only text
    raw = b"Send Ppp mailing list submissions to\n\tppp@zzz.org\n"

    # WHEN / THEN converting it raises our error
    with pytest.raises(MailLoadError, match="no header fields"):
        graph_message_from_eml(raw)


def test_iter_mail_files_reads_eml_mbox_and_bare_messages(tmp_path: Path) -> None:
    """A directory yields .eml files, each mbox message and extension-less RFC 5322 files."""
    # GIVEN an .eml, a two-message mbox, a SpamAssassin-style file and files to ignore
    (tmp_path / "b.eml").write_bytes(eml())
    mbox = b"From a@x Mon Jan  1 00:00:00 2026\n" + eml(Subject="one").replace(b"\r\n", b"\n")
    mbox += b"\nFrom b@x Mon Jan  1 00:00:00 2026\n" + eml(Subject="two").replace(b"\r\n", b"\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "list.mbox").write_bytes(mbox)
    (tmp_path / "sub" / "00001.7c53336b37003a9286aba55d2945844c").write_bytes(eml())
    (tmp_path / "_manifest.tsv").write_bytes(b"file\tbytes\n")
    (tmp_path / "README.md").write_bytes(b"Subject: looks like a header\n\nbut is not mail")
    (tmp_path / "notes").write_bytes(b"just some notes\n")

    # WHEN the directory is iterated
    found = [
        (path.relative_to(tmp_path).as_posix(), raw) for path, raw in iter_mail_files(tmp_path)
    ]

    # THEN the three mail sources appear in sorted order, the mbox split in two
    assert [name for name, _ in found] == [
        "b.eml",
        "sub/00001.7c53336b37003a9286aba55d2945844c",
        "sub/list.mbox",
        "sub/list.mbox",
    ]
    subjects = [graph_message_from_eml(raw)["subject"] for _, raw in found[2:]]
    assert subjects == ["one", "two"]


def test_iter_mail_files_raises_without_an_error_callback(tmp_path: Path) -> None:
    """A file that cannot be read raises MailLoadError unless on_error is given."""
    # GIVEN a path to a file that does not exist
    missing = tmp_path / "gone.eml"
    reported: list[tuple[Path, str]] = []

    # WHEN it is iterated with and without a callback
    with pytest.raises(MailLoadError, match="cannot read"):
        list(iter_mail_files(missing))
    list(iter_mail_files(missing, on_error=lambda path, reason: reported.append((path, reason))))

    # THEN the callback received the failure instead
    assert [path for path, _ in reported] == [missing]


def test_load_directory_reports_files_that_are_not_mail(tmp_path: Path) -> None:
    """load_directory returns good messages and names each file it had to skip."""
    # GIVEN one good and one header-less .eml file
    (tmp_path / "good.eml").write_bytes(eml())
    (tmp_path / "body-only.eml").write_bytes(b"just a body\n")

    # WHEN the directory is loaded
    messages, failures = load_directory(tmp_path)

    # THEN one message loads and the other file is reported with a reason
    assert [m["internetMessageId"] for m in messages] == ["<q1@customer.example>"]
    assert failures == [LoadFailure(tmp_path / "body-only.eml", failures[0].reason)]
    assert "no header fields" in failures[0].reason
