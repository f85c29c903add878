"""Functional tests of the simulator's draft, attachment, upload-session and send endpoints."""

from __future__ import annotations

import base64
import uuid
from urllib.parse import quote

import pytest
import requests

from devstack.simulator import FaultRule, Simulator
from devstack.tls import create_tls_material

MB = 1024 * 1024
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return create_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def sim(tls):
    simulator = Simulator(tls, api_audience="api://outlook-sync-tests")
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def mailbox(sim, tls):
    """A user and a requests session carrying a Graph token; returns (upn, session)."""
    upn = f"user-{uuid.uuid4().hex[:8]}@contoso.test"
    sim.add_user(str(uuid.uuid4()), upn, "Mail User")
    session = requests.Session()
    session.trust_env = False
    session.verify = str(tls.ca_pem)
    session.headers.update(IMMUTABLE)
    session.headers["Authorization"] = f"Bearer {sim.issue_graph_token(upn)}"
    return upn, session


def _draft(sim, session, **extra):
    body = {
        "subject": "Hello",
        "body": {"contentType": "html", "content": "<p>Hi</p>"},
        "toRecipients": [{"emailAddress": {"address": "jane@customer.example"}}],
        **extra,
    }
    response = session.post(f"{sim.graph_url}/me/messages", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _url(sim, message_id, suffix=""):
    return f"{sim.graph_url}/me/messages/{quote(message_id, safe='')}{suffix}"


def _file(size, name="a.bin"):
    content = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": name,
        "contentType": "application/pdf",
        "contentBytes": base64.b64encode(content).decode("ascii"),
    }


def test_draft_is_created_in_drafts_with_an_internet_message_id(sim, mailbox):
    """POST /me/messages answers 201 with a draft in Drafts that carries an internetMessageId."""
    # GIVEN a mailbox
    upn, session = mailbox

    # WHEN a draft is created
    draft = _draft(sim, session)

    # THEN it is a draft in Drafts, readable by its immutable id
    assert draft["isDraft"] is True
    assert draft["parentFolderId"] == sim.folder_id(upn, "drafts")
    assert draft["internetMessageId"].startswith("<")
    again = session.get(_url(sim, draft["id"]))
    assert again.json()["internetMessageId"] == draft["internetMessageId"]


def test_send_moves_the_draft_to_sent_items_keeping_ids(sim, mailbox):
    """Send answers 202; the same immutable id then names the Sent Items copy, same Message-ID."""
    # GIVEN a draft
    upn, session = mailbox
    draft = _draft(sim, session)

    # WHEN it is sent
    sent = session.post(_url(sim, draft["id"], "/send"))

    # THEN it sits in Sent Items with the same immutable id and internetMessageId
    assert sent.status_code == 202
    after = session.get(_url(sim, draft["id"])).json()
    assert after["isDraft"] is False
    assert after["parentFolderId"] == sim.folder_id(upn, "sentitems")
    assert after["internetMessageId"] == draft["internetMessageId"]
    assert [m["id"] for m in sim.messages(upn, "drafts")] == []
    # AND sending it again is refused: it is no draft any more
    assert session.post(_url(sim, draft["id"], "/send")).status_code == 400


def test_inline_attachment_under_3_mb_is_added(sim, mailbox):
    """A 2.9 MB file goes inline: its base64 JSON stays under 4 MB."""
    # GIVEN a draft
    upn, session = mailbox
    draft = _draft(sim, session)

    # WHEN a 2.9 MB attachment is posted inline
    added = session.post(_url(sim, draft["id"], "/attachments"), json=_file(int(2.9 * MB)))

    # THEN it is stored whole
    assert added.status_code == 201, added.text
    stored = sim.attachments(upn, draft["id"])
    assert [a["size"] for a in stored] == [int(2.9 * MB)]


def test_request_body_over_4_mb_is_refused(sim, mailbox):
    """BR-09: a draft whose body alone is 4.2 MB is refused with 413, nothing created."""
    # GIVEN a mailbox
    upn, session = mailbox

    # WHEN a draft with a 4.2 MB body is posted
    body = {"subject": "big", "body": {"contentType": "html", "content": "x" * int(4.2 * MB)}}
    response = session.post(f"{sim.graph_url}/me/messages", json=body)

    # THEN Graph's 4 MB limit refuses it and Drafts stays empty
    assert response.status_code == 413
    assert "4MB" in response.json()["error"]["message"]
    assert sim.messages(upn, "drafts") == []


def test_inline_attachment_of_3_mb_or_more_is_refused(sim, mailbox):
    """A 3 MB file may not go inline, even when its request would fit."""
    # GIVEN a draft
    _, session = mailbox
    draft = _draft(sim, session)

    # WHEN exactly 3 MB is posted inline (base64 makes the request 4 MB, over the limit)
    response = session.post(_url(sim, draft["id"], "/attachments"), json=_file(3 * MB))

    # THEN it is refused
    assert response.status_code == 413


def test_upload_session_refuses_files_under_3_mb(sim, mailbox):
    """BR-09: an upload session for 0.6 MB answers ErrorAttachmentSizeShouldNotBeLessThan..."""
    # GIVEN a draft
    _, session = mailbox
    draft = _draft(sim, session)

    # WHEN an upload session is asked for a 0.6 MB file
    item = {"AttachmentItem": {"attachmentType": "file", "name": "b.pdf", "size": int(0.6 * MB)}}
    response = session.post(_url(sim, draft["id"], "/attachments/createUploadSession"), json=item)

    # THEN it is refused with Graph's code
    assert response.status_code == 400
    code = response.json()["error"]["code"]
    assert code == "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"


def test_upload_session_takes_ranges_in_order_and_adds_the_file(sim, mailbox, tls):
    """A 3.6 MB file uploads in 2 MB ranges without Authorization; the last PUT answers 201."""
    # GIVEN a draft and an upload session for 3.6 MB
    upn, session = mailbox
    draft = _draft(sim, session)
    size = int(3.6 * MB)
    item = {"AttachmentItem": {"attachmentType": "file", "name": "b.xlsx", "size": size}}
    opened = session.post(_url(sim, draft["id"], "/attachments/createUploadSession"), json=item)
    assert opened.status_code == 201, opened.text
    upload_url = opened.json()["uploadUrl"]
    content = bytes(range(256)) * (size // 256) + b"y" * (size % 256)
    plain = requests.Session()
    plain.trust_env, plain.verify = False, str(tls.ca_pem)

    # WHEN a range out of order is sent, then the ranges in order
    def put(start, end):
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes {start}-{end - 1}/{size}",
        }
        return plain.put(upload_url, data=content[start:end], headers=headers)

    skipped = put(2 * MB, size)
    first = put(0, 2 * MB)
    last = put(2 * MB, size)

    # THEN the skipped range is refused, the first answers the next range, the last 201
    assert skipped.status_code == 416
    assert first.status_code == 200
    assert first.json()["nextExpectedRanges"] == [f"{2 * MB}-"]
    assert last.status_code == 201
    assert "attachments(" in last.headers["Location"]
    stored = sim.attachments(upn, draft["id"])
    assert stored[0]["content"] == content
    assert stored[0]["name"] == "b.xlsx"


def test_delete_removes_a_draft(sim, mailbox):
    """DELETE /me/messages/{id} answers 204 and the draft is gone."""
    # GIVEN a draft
    upn, session = mailbox
    draft = _draft(sim, session)

    # WHEN it is deleted
    response = session.delete(_url(sim, draft["id"]))

    # THEN it no longer exists
    assert response.status_code == 204
    assert session.get(_url(sim, draft["id"])).status_code == 404
    assert sim.messages(upn, "drafts") == []


def test_send_can_be_throttled_by_a_fault_rule(sim, mailbox):
    """A 429 fault on /send answers with Retry-After and leaves the draft unsent."""
    # GIVEN a draft and a throttling rule on send
    upn, session = mailbox
    draft = _draft(sim, session)
    rule = FaultRule(path=r"/send$", status=429, user=upn, headers={"Retry-After": "3"})
    sim.add_fault(rule)

    # WHEN it is sent
    response = session.post(_url(sim, draft["id"], "/send"))

    # THEN Graph throttles and the draft stays a draft
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert len(sim.messages(upn, "drafts")) == 1


def test_mailbox_settings_give_the_time_zone(sim, mailbox):
    """GET /me/mailboxSettings answers the mailbox's time zone, as set for the test."""
    # GIVEN a mailbox in New York time
    upn, session = mailbox
    sim.set_mailbox_time_zone(upn, "America/New_York")

    # WHEN its settings are read with a settings scope
    session.headers["Authorization"] = (
        f"Bearer {sim.issue_graph_token(upn, scopes=('MailboxSettings.Read',))}"
    )
    response = session.get(f"{sim.graph_url}/me/mailboxSettings")

    # THEN the zone is there
    assert response.status_code == 200
    assert response.json()["timeZone"] == "America/New_York"


def test_create_reply_drafts_in_the_original_thread(sim, mailbox):
    """createReply makes a draft with the original's conversation and In-Reply-To."""
    # GIVEN a received message
    upn, session = mailbox
    original_id = sim.add_message(
        upn,
        "inbox",
        {
            "subject": "Question",
            "internetMessageId": "<q1@customer.example>",
            "from": {"emailAddress": {"address": "jane@customer.example"}},
        },
    )

    # WHEN a reply draft is created with a body
    message = {"body": {"contentType": "html", "content": "<p>Yes</p>"}}
    response = session.post(_url(sim, original_id, "/createReply"), json={"message": message})

    # THEN it is a draft to the sender, in the same conversation, naming its parent
    assert response.status_code == 201, response.text
    draft = response.json()
    original = session.get(_url(sim, original_id)).json()
    assert draft["isDraft"] is True
    assert draft["subject"] == "RE: Question"
    assert draft["conversationId"] == original["conversationId"]
    assert draft["toRecipients"][0]["emailAddress"]["address"] == "jane@customer.example"
    headers = sim.internet_headers(upn, draft["id"])
    assert headers["In-Reply-To"] == "<q1@customer.example>"
