"""Functional tests of the simulator's Graph mail endpoints over real HTTPS."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import secrets
import ssl
import uuid
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import requests

from devstack.consentdriver import drive_consent
from devstack.simulator import FaultRule, Simulator
from devstack.tls import create_tls_material

CALLBACK = "https://app.example.test/auth/callback"
IMMUTABLE = 'IdType="ImmutableId"'


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return create_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def sim(tls):
    simulator = Simulator(tls, api_audience="api://outlook-sync-tests")
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def ca(tls):
    return str(tls.ca_pem)


def _sign_in(sim, ca, upn, scope="Mail.ReadWrite offline_access openid"):
    """Run the auth code + PKCE flow over HTTP and return the access token."""
    client_id = str(uuid.uuid4())
    sim.register_app(client_id, "pw", [CALLBACK])
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    params = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": CALLBACK,
        "scope": scope,
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
        "login_hint": upn,
    }
    url = f"{sim.base_url}/organizations/oauth2/v2.0/authorize?{urlencode(params)}"
    code = parse_qs(urlsplit(drive_consent(url, verify=ca)).query)["code"][0]
    data = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "client_secret": "pw",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
    }
    token_url = f"{sim.base_url}/organizations/oauth2/v2.0/token"
    return requests.post(token_url, data=data, verify=ca).json()["access_token"]


@pytest.fixture
def mailbox(sim, ca):
    """A user with a Graph token; returns (upn, session) with the bearer token set."""
    upn = f"user-{uuid.uuid4().hex[:8]}@contoso.test"
    sim.add_user(str(uuid.uuid4()), upn, "Mail User")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {_sign_in(sim, ca, upn)}"
    session.verify = ca
    # NOTE: requests lets REQUESTS_CA_BUNDLE override Session.verify; clear it for this session.
    session.trust_env = False
    return upn, session


def _message(n, received="2024-03-01T09:00:00Z"):
    return {
        "subject": f"Subject {n}",
        "internetMessageId": f"<msg-{n}@example.test>",
        "body": {"contentType": "html", "content": f"<p>Hello <b>{n}</b></p>"},
        "from": {"emailAddress": {"name": "Sender", "address": "sender@example.test"}},
        "toRecipients": [{"emailAddress": {"name": "Mail User", "address": "u@contoso.test"}}],
        "receivedDateTime": received,
        "internetMessageHeaders": [{"name": "X-Test", "value": str(n)}],
    }


def _delta_round(session, url, headers=None):
    """Follow nextLinks to the end of a round; return (pages, deltaLink)."""
    pages = []
    while True:
        response = session.get(url, headers=headers or {})
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["value"])
        if "@odata.deltaLink" in body:
            return pages, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]


def test_delta_initial_round_pages_by_maxpagesize(sim, mailbox):
    """The first round returns every message, in pages of odata.maxpagesize chained by nextLink."""
    # GIVEN seven messages in the inbox
    upn, session = mailbox
    sim.load_messages(upn, "inbox", [_message(n) for n in range(7)])
    url = f"{sim.graph_url}/me/mailFolders/inbox/messages/delta"

    # WHEN the client reads a round with a page size of 3
    first = session.get(url, headers={"Prefer": "odata.maxpagesize=3"})
    pages, delta_link = _delta_round(session, url, {"Prefer": "odata.maxpagesize=3"})

    # THEN the pages are 3, 3 and 1 long and the links carry skip and delta tokens
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=3"
    assert "$skiptoken=" in first.json()["@odata.nextLink"]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert "$deltatoken=" in delta_link
    subjects = sorted(m["subject"] for p in pages for m in p)
    assert subjects == sorted(f"Subject {n}" for n in range(7))


def test_delta_default_page_size_is_ten(sim, mailbox):
    """Without a Prefer header pages hold ten messages."""
    # GIVEN twelve messages
    upn, session = mailbox
    sim.load_messages(upn, "inbox", [_message(n) for n in range(12)])

    # WHEN a round is read without a page size
    pages, _ = _delta_round(session, f"{sim.graph_url}/me/mailFolders/inbox/messages/delta")

    # THEN the pages are 10 and 2 long
    assert [len(p) for p in pages] == [10, 2]


def test_delta_select_is_honoured_across_pages(sim, mailbox):
    """$select on the first request limits the properties of every page; id is always there."""
    # GIVEN three messages
    upn, session = mailbox
    sim.load_messages(upn, "inbox", [_message(n) for n in range(3)])
    select = "$select=subject,internetMessageHeaders"
    url = f"{sim.graph_url}/me/mailFolders/inbox/messages/delta?{select}"

    # WHEN a round is read in pages of 2
    pages, _ = _delta_round(session, url, {"Prefer": "odata.maxpagesize=2"})

    # THEN each message has only the selected properties plus id and OData annotations
    for message in (m for p in pages for m in p):
        plain = {k for k in message if not k.startswith("@")}
        assert plain == {"id", "subject", "internetMessageHeaders"}


def test_delta_default_properties_exclude_headers(sim, mailbox):
    """Without $select a message has Graph's default properties and no internetMessageHeaders."""
    # GIVEN a message with headers
    upn, session = mailbox
    sim.add_message(upn, "inbox", _message(1))

    # WHEN a round is read
    pages, _ = _delta_round(session, f"{sim.graph_url}/me/mailFolders/inbox/messages/delta")

    # THEN the message has the usual shape
    message = pages[0][0]
    assert "internetMessageHeaders" not in message
    assert message["internetMessageId"] == "<msg-1@example.test>"
    assert message["bodyPreview"] == "Hello 1"
    assert message["sender"]["emailAddress"]["address"] == "sender@example.test"
    assert message["@odata.etag"] == f'W/"{message["changeKey"]}"'
    assert message["parentFolderId"] == sim.folder_id(upn, "inbox")
    assert message["isRead"] is False


def test_delta_filter_received_datetime(sim, mailbox):
    """$filter=receivedDateTime ge X returns only messages received from X on."""
    # GIVEN messages received in January and in March
    upn, session = mailbox
    sim.add_message(upn, "inbox", _message(1, "2024-01-10T00:00:00Z"))
    sim.add_message(upn, "inbox", _message(2, "2024-03-10T00:00:00Z"))
    url = f"{sim.graph_url}/me/mailFolders/inbox/messages/delta"

    # WHEN a round is filtered from February
    pages, delta_link = _delta_round(
        session, url + "?$filter=receivedDateTime ge 2024-02-01T00:00:00Z"
    )
    sim.add_message(upn, "inbox", _message(3, "2024-01-11T00:00:00Z"))
    later, _ = _delta_round(session, delta_link)

    # THEN only the March message comes, and the filter sticks to the next round
    assert [m["subject"] for p in pages for m in p] == ["Subject 2"]
    assert [m for p in later for m in p] == []


def test_delta_unsupported_filter_is_bad_request(sim, mailbox):
    """A $filter other than receivedDateTime ge|gt is refused."""
    # GIVEN / WHEN a round is asked with a subject filter
    _, session = mailbox
    url = f"{sim.graph_url}/me/mailFolders/inbox/messages/delta?$filter=subject eq 'x'"
    response = session.get(url)

    # THEN it is a 400 in Graph's error shape with a request id
    assert response.status_code == 400
    assert response.json()["error"]["innerError"]["request-id"] == response.headers["request-id"]


def test_delta_second_round_returns_only_changes(sim, mailbox):
    """After add, update, move and delete the next round has exactly those changes."""
    # GIVEN a completed first round over four messages
    upn, session = mailbox
    ids = sim.load_messages(upn, "inbox", [_message(n) for n in range(4)])
    headers = {"Prefer": IMMUTABLE}
    url = f"{sim.graph_url}/me/mailFolders/inbox/messages/delta"
    _, delta_link = _delta_round(session, url, headers)

    # WHEN one is added, one updated, one moved out and one deleted
    added = sim.add_message(upn, "inbox", _message(9))
    sim.update_message(upn, ids[0], {"isRead": True})
    sim.move_message(upn, ids[1], "archive")
    sim.delete_message(upn, ids[2])
    pages, next_delta = _delta_round(session, delta_link, headers)

    # THEN the round has the new and the changed message, and two removals
    items = {m["id"]: m for p in pages for m in p}
    assert set(items) == {added, ids[0], ids[1], ids[2]}
    assert items[ids[0]]["isRead"] is True
    assert items[ids[1]]["@removed"] == {"reason": "deleted"}
    assert items[ids[2]]["@removed"] == {"reason": "deleted"}
    assert "@removed" not in items[added]
    quiet, _ = _delta_round(session, next_delta, headers)
    assert quiet == [[]]


def test_delta_move_keeps_immutable_id_only(sim, mailbox):
    """A moved message keeps its id with ImmutableId and gets a new id without it."""
    # GIVEN a message seen in the inbox with both id kinds
    upn, session = mailbox
    message_id = sim.add_message(upn, "inbox", _message(1))
    inbox = f"{sim.graph_url}/me/mailFolders/inbox/messages/delta"
    archive = f"{sim.graph_url}/me/mailFolders/archive/messages/delta"
    rest_before = _delta_round(session, inbox)[0][0][0]["id"]
    immutable_before = _delta_round(session, inbox, {"Prefer": IMMUTABLE})[0][0][0]["id"]

    # WHEN it moves to the archive
    sim.move_message(upn, message_id, "archive")
    rest_after = _delta_round(session, archive)[0][0][0]["id"]
    immutable_after = _delta_round(session, archive, {"Prefer": IMMUTABLE})[0][0][0]["id"]

    # THEN the immutable id is unchanged and the REST id changed; the old REST id is gone
    assert immutable_before == immutable_after == message_id
    assert rest_before != rest_after
    old = session.get(f"{sim.graph_url}/me/messages/{quote(rest_before, safe='')}")
    assert old.status_code == 404
    assert old.json()["error"]["code"] == "ErrorItemNotFound"


def _get_with_headers(url, headers, ca):
    """GET with repeated header lines, which requests cannot send."""
    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=ca)
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context)
    connection.putrequest("GET", f"{parts.path}?{parts.query}")
    for name, value in headers:
        connection.putheader(name, value)
    connection.endheaders()
    body = json.loads(connection.getresponse().read())
    connection.close()
    return body


def test_delta_prefer_in_several_headers_and_one_list(sim, mailbox, ca):
    """Preferences work both comma-separated in one header and spread over several headers."""
    # GIVEN three messages
    upn, session = mailbox
    ids = sim.load_messages(upn, "inbox", [_message(n) for n in range(3)])
    url = f"{sim.graph_url}/me/mailFolders/inbox/messages/delta"

    # WHEN the preferences come as one list, then as two header lines
    one = session.get(url, headers={"Prefer": f"odata.maxpagesize=2, {IMMUTABLE}"}).json()
    two = _get_with_headers(
        url,
        [
            ("Authorization", session.headers["Authorization"]),
            ("Prefer", "odata.maxpagesize=1"),
            ("Prefer", IMMUTABLE),
        ],
        ca,
    )

    # THEN page size and id kind are both applied
    assert len(one["value"]) == 2
    assert {m["id"] for m in one["value"]} <= set(ids)
    assert len(two["value"]) == 1
    assert two["value"][0]["id"] in ids


def test_message_ids_are_base64_with_special_characters(sim, mailbox):
    """Message ids contain / + = and are case-sensitive when fetched."""
    # GIVEN a message
    upn, session = mailbox
    message_id = sim.add_message(upn, "inbox", _message(1))

    # WHEN it is fetched by its id and by a case-changed id
    good = session.get(
        f"{sim.graph_url}/me/messages/{quote(message_id, safe='')}", headers={"Prefer": IMMUTABLE}
    )
    bad = session.get(f"{sim.graph_url}/me/messages/{quote(message_id.swapcase(), safe='')}")

    # THEN only the exact id works
    assert {"/", "+", "="} <= set(message_id)
    assert good.status_code == 200
    assert good.json()["id"] == message_id
    assert bad.status_code == 404


def test_mail_folders_page_with_top(sim, mailbox):
    """GET /me/mailFolders lists the six top-level folders across $top pages."""
    # GIVEN a fresh mailbox
    _, session = mailbox
    url = f"{sim.graph_url}/me/mailFolders?$top=4"

    # WHEN the client follows nextLinks
    names = []
    while url:
        body = session.get(url).json()
        names += [f["displayName"] for f in body["value"]]
        url = body.get("@odata.nextLink")

    # THEN it sees the well-known folders once each
    expected = {"Inbox", "Sent Items", "Drafts", "Deleted Items", "Archive", "Junk Email"}
    assert sorted(names) == sorted(expected)


def test_mail_folder_by_name_and_child_folders(sim, mailbox):
    """A folder is reachable by well-known name and by id, and lists its child folders."""
    # GIVEN a child folder with one unread message under the inbox
    upn, session = mailbox
    child = sim.create_folder(upn, "Projects", parent="inbox")
    sim.add_message(upn, child, _message(1))

    # WHEN the inbox and its children are read
    inbox = session.get(f"{sim.graph_url}/me/mailFolders/inbox").json()
    children = session.get(f"{sim.graph_url}/me/mailFolders/inbox/childFolders").json()
    by_id = session.get(f"{sim.graph_url}/me/mailFolders/{quote(child, safe='')}").json()

    # THEN the shapes and counts are Graph's
    assert inbox["displayName"] == "Inbox"
    assert inbox["childFolderCount"] == 1
    assert {"/", "+", "="} <= set(inbox["id"])
    assert [f["id"] for f in children["value"]] == [child]
    assert by_id["parentFolderId"] == inbox["id"]
    assert by_id["totalItemCount"] == 1
    assert by_id["unreadItemCount"] == 1
    assert by_id["isHidden"] is False


def test_me_returns_the_token_user(sim, mailbox):
    """GET /me answers for the user the token was issued to."""
    # GIVEN / WHEN the user asks who they are
    upn, session = mailbox
    body = session.get(f"{sim.graph_url}/me").json()

    # THEN it is them
    assert body["userPrincipalName"] == upn


def test_graph_without_token_is_unauthorized(sim, ca):
    """A call without a bearer token gets 401 InvalidAuthenticationToken."""
    # GIVEN / WHEN an anonymous call
    response = requests.get(f"{sim.graph_url}/me/mailFolders", verify=ca)

    # THEN it is refused in Graph's shape
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "request-id" in response.headers


def test_graph_expired_token_is_unauthorized(sim, mailbox):
    """An access token past its expiry on the simulated clock is refused."""
    # GIVEN a token and two hours passing
    _, session = mailbox
    sim.advance_time(7200)

    # WHEN it is used
    response = session.get(f"{sim.graph_url}/me")

    # THEN Graph refuses it
    assert response.status_code == 401


def test_fault_rule_throttles_delta_then_recovers(sim, mailbox):
    """A 429 fault with Retry-After answers the next two delta calls, then delta works again."""
    # GIVEN a fault rule for this user's delta calls
    upn, session = mailbox
    sim.add_fault(
        FaultRule(
            path=r"/messages/delta$",
            status=429,
            user=upn,
            count=2,
            headers={"Retry-After": "3"},
            body={"error": {"code": "TooManyRequests", "message": "Please retry."}},
        )
    )
    url = f"{sim.graph_url}/me/mailFolders/inbox/messages/delta"

    # WHEN the client calls three times
    statuses = [session.get(url) for _ in range(3)]

    # THEN two are throttled and the request log counts three delta calls
    assert [r.status_code for r in statuses] == [429, 429, 200]
    assert statuses[0].headers["Retry-After"] == "3"
    seen = [r for r in sim.requests_seen() if r.path.endswith("/messages/delta")]
    assert [r.status for r in seen] == [429, 429, 200]
    assert seen[0].service == "graph"


def test_delta_token_invalidated_is_gone(sim, mailbox):
    """After invalidate_delta_tokens a stored deltaLink answers 410 syncStateNotFound."""
    # GIVEN a completed round
    upn, session = mailbox
    sim.add_message(upn, "inbox", _message(1))
    _, delta_link = _delta_round(session, f"{sim.graph_url}/me/mailFolders/inbox/messages/delta")

    # WHEN the mailbox forgets its sync state
    sim.invalidate_delta_tokens(upn)
    response = session.get(delta_link)

    # THEN the client is told to resync
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "syncStateNotFound"


def test_mail_without_mail_scope_is_forbidden(sim, ca):
    """A token without a Mail permission cannot read messages."""
    # GIVEN a user signed in with User.Read only
    upn = f"user-{uuid.uuid4().hex[:8]}@contoso.test"
    sim.add_user(str(uuid.uuid4()), upn)
    token = _sign_in(sim, ca, upn, scope="User.Read openid")

    # WHEN it reads a delta round
    response = requests.get(
        f"{sim.graph_url}/me/mailFolders/inbox/messages/delta",
        headers={"Authorization": f"Bearer {token}"},
        verify=ca,
    )

    # THEN Graph refuses
    assert response.status_code == 403
