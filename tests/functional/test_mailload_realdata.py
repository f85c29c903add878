"""Functional tests: every real mail file in ../shared/realdata/mail loads as Graph JSON."""

from __future__ import annotations

import json
import re
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from typing import TYPE_CHECKING, Any

import pytest

from devstack.mailload import MailLoadError, graph_message_from_eml, iter_mail_files

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.realdata

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
FIELDS = {
    "From": "from",
    "Sender": "sender",
    "To": "toRecipients",
    "Cc": "ccRecipients",
    "Bcc": "bccRecipients",
    "Reply-To": "replyTo",
}


@pytest.fixture(scope="module")
def corpus(realdata: Path) -> list[tuple[Path, bytes]]:
    """Every raw message under realdata/mail, read once for the module."""
    return list(iter_mail_files(realdata / "mail"))


def raw_addresses(raw: bytes, header: str) -> list[str]:
    """Addresses getaddresses finds in the raw, unfolded header values, as the spec requires."""
    values = BytesHeaderParser(policy=compat32).parsebytes(raw).get_all(header, [])
    unfolded = [re.sub(r"[\r\n]", "", str(value)) for value in values]
    return [address for _, address in getaddresses(unfolded) if _usable(address)]


def _usable(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain)


def graph_addresses(message: dict[str, Any], field: str) -> list[str]:
    value = message[field]
    recipients = value if isinstance(value, list) else [value] if value else []
    return [r["emailAddress"]["address"] for r in recipients]


def test_iter_mail_files_finds_every_message_file(realdata: Path, corpus: list) -> None:
    """Every .eml in the corpus is yielded once, and the manifests are skipped."""
    # GIVEN the files on disk
    expected = sorted(p for p in (realdata / "mail").rglob("*.eml"))

    # WHEN the corpus was iterated (fixture)
    found = [path for path, _ in corpus]

    # THEN each message file appears once, in sorted order, and nothing else does
    assert found == expected


def test_graph_message_from_eml_loads_every_real_message(corpus: list) -> None:
    """Every real file converts without an unexpected exception and serialises as JSON."""
    # GIVEN the real corpus
    rejected = []

    # WHEN each message is converted
    for path, raw in corpus:
        try:
            message = graph_message_from_eml(raw)
        except MailLoadError:
            rejected.append(path)
            continue

        # THEN the result is valid JSON with Graph-shaped dates and fixed flags
        json.dumps(message, ensure_ascii=False).encode("utf-8")
        assert ISO_UTC.fullmatch(message["sentDateTime"]), path
        assert ISO_UTC.fullmatch(message["receivedDateTime"]), path
        assert message["body"]["contentType"] in ("html", "text"), path
        assert len(message["bodyPreview"]) <= 255, path

    # THEN the only rejected files are ones with no header block at all
    for path in rejected:
        first_line = path.read_bytes().split(b"\n", 1)[0]
        assert not re.match(rb"[!-9;-~]+:", first_line), path
    assert len(rejected) <= 1


def test_graph_message_from_eml_matches_getaddresses_on_real_headers(corpus: list) -> None:
    """Recipients equal what getaddresses finds in the raw headers, entry for entry."""
    # GIVEN the real corpus
    checked = 0

    for path, raw in corpus:
        # WHEN a message is converted
        try:
            message = graph_message_from_eml(raw)
        except MailLoadError:
            continue

        # THEN every address field matches getaddresses on the raw header
        expected = {field: raw_addresses(raw, header) for header, field in FIELDS.items()}
        expected["from"] = expected["from"][:1]
        expected["sender"] = expected["sender"][:1] or expected["from"]
        for field, addresses in expected.items():
            assert graph_addresses(message, field) == addresses, (path, field)
            checked += len(addresses)
    assert checked > 500
