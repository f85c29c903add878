"""Unit tests for shared.adapters.graph with a scripted requests session."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests

from shared.adapters.graph import MAX_ATTEMPTS, MESSAGE_FIELDS, GraphMailClient
from shared.adapters.graphsend import GraphSendClient
from shared.errors import (
    MAX_RETRY_AFTER_S,
    DeltaCursorExpiredError,
    GraphRequestError,
    NotFoundError,
    ThrottledError,
    TransientError,
)
from tests.unit.fakes import FakeSession, response

BASE = "https://graph.example.net/v1.0"
TOKEN = "access-token"
IMMUTABLE = 'IdType="ImmutableId"'


def ok(body: dict[str, Any]) -> requests.Response:
    """A 200 answer with a JSON body."""
    return response(200, json.dumps(body), {"Content-Type": "application/json"})


def error(status: int, code: str, inner: str | None = None, **headers: str) -> requests.Response:
    """A Graph error answer, optionally with a nested innerError code."""
    node: dict[str, Any] = {"code": code, "message": "refused"}
    if inner is not None:
        node["innerError"] = {"code": "generalException", "innerError": {"code": inner}}
    return response(status, json.dumps({"error": node}), {"request-id": "req-1", **headers})


def page(
    ids: list[str], *, next_link: str | None = None, delta_link: str | None = None
) -> requests.Response:
    """A delta page answer."""
    body: dict[str, Any] = {"value": [{"id": i} for i in ids]}
    if next_link:
        body["@odata.nextLink"] = next_link
    if delta_link:
        body["@odata.deltaLink"] = delta_link
    return ok(body)


class Sleeps:
    """Records the waits the client asks for instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(*script: requests.Response | Exception, page_size: int = 25):
    """Return a client over a scripted session, the session, and the recorded sleeps."""
    session = FakeSession(list(script))
    sleeps = Sleeps()
    graph = GraphMailClient(
        BASE + "/",
        page_size=page_size,
        session=session,  # type: ignore[arg-type]
        sleep=sleeps,
        jitter=lambda: 0.0,
    )
    return graph, session, sleeps


def test_delta_pages_first_url_selects_fields_and_filters_by_received_time():
    """A first round asks for the message fields and messages received since the window."""
    # GIVEN a client and a folder without a stored link
    graph, session, _ = client(page(["m1"], delta_link=f"{BASE}/delta?$deltatoken=d1"))
    since = datetime(2024, 3, 5, 6, 7, 8, tzinfo=UTC)

    # WHEN the folder's delta round is read
    list(graph.delta_pages(TOKEN, "AAMk/fold=er", resume_url=None, since=since))

    # THEN the URL names the folder escaped, selects the fields and filters by receivedDateTime
    url = session.sent[0].url
    parts = urlsplit(url)
    assert parts.path == "/v1.0/me/mailFolders/AAMk%2Ffold%3Der/messages/delta"
    query = parse_qs(parts.query)
    assert query["$select"] == [",".join(MESSAGE_FIELDS)]
    assert query["$filter"] == ["receivedDateTime ge 2024-03-05T06:07:08Z"]


def test_delta_pages_filter_converts_since_to_utc():
    """A window start given in another time zone is sent as the same instant in UTC."""
    # GIVEN a window start at 02:00 in UTC+2
    graph, session, _ = client(page([], delta_link="d"))
    since = datetime(2024, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))

    # WHEN the first delta round is read
    list(graph.delta_pages(TOKEN, "inbox", resume_url=None, since=since))

    # THEN the filter names midnight UTC
    assert unquote(session.sent[0].url).endswith("receivedDateTime ge 2024-01-01T00:00:00Z")


def test_delta_pages_without_window_has_no_filter():
    """A first round without a window start reads the whole folder."""
    # GIVEN a client
    graph, session, _ = client(page([], delta_link="d"))

    # WHEN the delta round starts without a window
    list(graph.delta_pages(TOKEN, "inbox", resume_url=None, since=None))

    # THEN the URL carries no filter
    assert "$filter" not in session.sent[0].url


def test_delta_pages_follow_next_links_until_delta_link():
    """Paging follows each nextLink and stops at the page with the deltaLink."""
    # GIVEN three pages chained by next links
    graph, session, _ = client(
        page(["m1", "m2"], next_link="https://graph.example.net/next-1"),
        page(["m3"], next_link="https://graph.example.net/next-2"),
        page([], delta_link="https://graph.example.net/delta-3"),
    )

    # WHEN the round is read
    pages = list(graph.delta_pages(TOKEN, "inbox", resume_url=None, since=None))

    # THEN every page is yielded in order, with the links, and the next links were requested
    assert [[item["id"] for item in p.items] for p in pages] == [["m1", "m2"], ["m3"], []]
    assert [p.next_link for p in pages] == [
        "https://graph.example.net/next-1",
        "https://graph.example.net/next-2",
        None,
    ]
    assert pages[-1].delta_link == "https://graph.example.net/delta-3"
    assert [r.url for r in session.sent[1:]] == [
        "https://graph.example.net/next-1",
        "https://graph.example.net/next-2",
    ]


def test_delta_pages_resume_from_stored_link():
    """A stored link is requested as is, without building a new first URL."""
    # GIVEN a stored next link
    stored = "https://graph.example.net/v1.0/me/mailFolders/x/messages/delta?$skiptoken=s9"
    graph, session, _ = client(page(["m9"], delta_link="d"))

    # WHEN the round resumes from it
    list(graph.delta_pages(TOKEN, "x", resume_url=stored, since=datetime.now(UTC)))

    # THEN exactly that link was requested
    assert [r.url for r in session.sent] == [stored]


def test_every_request_prefers_immutable_ids_and_delta_sets_page_size():
    """Every request asks for immutable ids; delta requests also ask for the page size."""
    # GIVEN answers for a profile, a message and two delta pages
    graph, session, _ = client(
        ok({"id": "me"}),
        ok({"id": "m1", "parentFolderId": "f"}),
        page(["m1"], next_link="https://graph.example.net/next"),
        page([], delta_link="d"),
        page_size=37,
    )

    # WHEN each kind of request is made
    graph.get_me(TOKEN)
    graph.get_message(TOKEN, "m1")
    list(graph.delta_pages(TOKEN, "inbox", resume_url=None, since=None))

    # THEN all carry the token and the id preference, and only delta ones the page size
    prefers = [r.headers["Prefer"] for r in session.sent]
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in session.sent)
    assert all(IMMUTABLE in p for p in prefers)
    assert ["odata.maxpagesize=37" in p for p in prefers] == [False, False, True, True]
    assert all(r.timeout is not None for r in session.sent)


def test_get_429_with_short_retry_after_sleeps_and_retries():
    """A 429 asking for 2 seconds is waited out in place and the request retried."""
    # GIVEN a throttled answer, then success
    graph, session, sleeps = client(
        response(429, "", {"Retry-After": "2"}),
        ok({"id": "me"}),
    )

    # WHEN the profile is read
    me = graph.get_me(TOKEN)

    # THEN the client slept 2 seconds, retried and returned the answer
    assert me == {"id": "me"}
    assert sleeps.waits == [2.0]
    assert len(session.sent) == 2
    assert graph.counter.throttled == 1
    assert graph.counter.by_status == {429: 1, 200: 1}


def test_get_429_with_long_retry_after_raises_without_sleeping():
    """A 429 asking for 120 seconds raises ThrottledError carrying the wait, unslept."""
    # GIVEN a throttled answer asking for two minutes
    graph, session, sleeps = client(response(429, "", {"Retry-After": "120"}))

    # WHEN the profile is read THEN ThrottledError carries the wait
    with pytest.raises(ThrottledError) as caught:
        graph.get_me(TOKEN)

    assert caught.value.retry_after_s == 120
    assert sleeps.waits == []
    assert len(session.sent) == 1


def test_get_429_with_retry_after_as_a_date_waits_until_then():
    """Retry-After as an HTTP date counts like seconds: far off raises, near is slept."""
    # GIVEN one answer asking to come back in ten minutes, and one in about two seconds
    later = (datetime.now(UTC) + timedelta(minutes=10)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    soon = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    far, _, far_sleeps = client(response(429, "", {"Retry-After": later}))
    near, _, near_sleeps = client(response(429, "", {"Retry-After": soon}), ok({"id": "me"}))

    # WHEN the profile is read through each
    with pytest.raises(ThrottledError) as caught:
        far.get_me(TOKEN)
    me = near.get_me(TOKEN)

    # THEN the far date re-queues for about ten minutes, unslept; the near one is slept through
    assert 590 <= caught.value.retry_after_s <= 600
    assert far_sleeps.waits == []
    assert me == {"id": "me"}
    [wait] = near_sleeps.waits
    assert 1 <= wait <= 3


@pytest.mark.parametrize(
    "header",
    ["9" * 400, "9" * 5000, "86400000", "Fri, 31 Dec 9999 23:59:59 GMT"],
    ids=["400 digits", "5000 digits", "1000 days", "year 9999"],
)
def test_get_429_with_retry_after_too_long_to_count_is_capped(header):
    """A Retry-After of any length, or a date centuries off, asks for at most an hour."""
    # GIVEN a throttled answer asking for a wait a float cannot hold or a queue cannot delay
    graph, _, sleeps = client(response(429, "", {"Retry-After": header}))

    # WHEN the profile is read THEN ThrottledError carries the capped wait, unslept
    with pytest.raises(ThrottledError) as caught:
        graph.get_me(TOKEN)

    assert caught.value.retry_after_s == MAX_RETRY_AFTER_S
    assert caught.value.delay_s == MAX_RETRY_AFTER_S
    assert sleeps.waits == []


def test_get_unavailable_without_retry_after_backs_off_with_jitter():
    """Without Retry-After each wait is jittered within the upper half of its doubling step."""
    # GIVEN a client whose jitter draws the largest value, over a service unavailable 3 times
    session = FakeSession([response(503), response(503), response(503), ok({"id": "me"})])
    sleeps = Sleeps()
    graph = GraphMailClient(
        BASE,
        session=session,  # type: ignore[arg-type]
        sleep=sleeps,
        jitter=lambda: 0.999,
    )

    # WHEN the profile is read
    graph.get_me(TOKEN)

    # THEN the waits are about half of 2, 4 and 8 seconds, not the same for every worker
    assert sleeps.waits == pytest.approx([1.001, 2.002, 4.004])


@pytest.mark.parametrize("status", [503, 504])
def test_get_unavailable_without_retry_after_backs_off_exponentially(status):
    """503/504 without Retry-After back off 2, 4, 8 s and give up at the attempt limit."""
    # GIVEN a service that stays unavailable
    graph, session, sleeps = client(*[response(status) for _ in range(MAX_ATTEMPTS)])

    # WHEN the profile is read THEN every attempt is used and ThrottledError raised
    with pytest.raises(ThrottledError) as caught:
        graph.get_me(TOKEN)

    assert len(session.sent) == MAX_ATTEMPTS
    assert sleeps.waits == [2.0, 4.0, 8.0]
    assert caught.value.retry_after_s >= 1.0


def test_get_unavailable_then_success_returns_answer():
    """A 503 followed by success returns the answer after one backoff."""
    # GIVEN one 503 then success
    graph, _, sleeps = client(response(503), ok({"id": "me"}))

    # WHEN the profile is read
    me = graph.get_me(TOKEN)

    # THEN it is returned after one 2-second wait
    assert me == {"id": "me"}
    assert sleeps.waits == [2.0]


@pytest.mark.parametrize(
    "answer",
    [
        error(410, "SyncStateNotFound"),
        response(410),
        error(400, "BadRequest", inner="syncStateNotFound"),
        error(400, "BadRequest", inner="resyncRequired"),
        error(400, "SyncStateInvalid"),
    ],
    ids=["410-code", "410-empty", "inner-syncStateNotFound", "inner-resyncRequired", "invalid"],
)
def test_delta_pages_expired_cursor_raises_delta_cursor_expired(answer):
    """410 and the sync-state error codes, nested or not, raise DeltaCursorExpiredError."""
    # GIVEN a stored link Graph no longer knows
    graph, _, _ = client(answer)

    # WHEN the round resumes from it THEN the cursor is reported expired
    with pytest.raises(DeltaCursorExpiredError):
        list(graph.delta_pages(TOKEN, "inbox", resume_url="https://g/old", since=None))


def test_get_message_404_raises_not_found():
    """A 404 raises NotFoundError."""
    # GIVEN a message that is gone
    graph, _, _ = client(error(404, "ErrorItemNotFound"))

    # WHEN it is read THEN NotFoundError is raised
    with pytest.raises(NotFoundError, match="req-1"):
        graph.get_message(TOKEN, "gone")


def test_get_400_raises_graph_request_error_with_code():
    """A 400 raises GraphRequestError carrying the status and Graph's error code."""
    # GIVEN a request Graph refuses
    graph, _, _ = client(error(400, "ErrorInvalidIdMalformed"))

    # WHEN it is made THEN the error carries status and code
    with pytest.raises(GraphRequestError) as caught:
        graph.get_message(TOKEN, "bad id")

    assert (caught.value.status, caught.value.code) == (400, "ErrorInvalidIdMalformed")


def test_get_500_raises_transient():
    """A 500 raises TransientError so the queue retries later."""
    # GIVEN a server error
    graph, _, sleeps = client(error(500, "generalException"))

    # WHEN a request is made THEN TransientError is raised, without an in-place retry
    with pytest.raises(TransientError):
        graph.get_me(TOKEN)

    assert sleeps.waits == []


@pytest.mark.parametrize(
    "failure",
    [requests.ConnectionError("refused"), requests.Timeout("slow")],
    ids=["connection", "timeout"],
)
def test_get_connection_failure_raises_transient(failure):
    """A transport failure raises TransientError chained to the requests exception."""
    # GIVEN a session that cannot reach Graph
    graph, _, _ = client(failure)

    # WHEN a request is made THEN TransientError wraps the cause
    with pytest.raises(TransientError) as caught:
        graph.get_me(TOKEN)

    assert caught.value.__cause__ is failure


def test_list_mail_folders_walks_children_and_builds_paths():
    """Folder listing follows next links and child folders and joins display names."""
    # GIVEN a top level over two pages, Inbox with a child, and the child with a grandchild
    top_next = f"{BASE}/me/mailFolders?$top=100&$skiptoken=p2"
    graph, session, _ = client(
        ok(
            {
                "value": [{"id": "inbox/id", "displayName": "Inbox", "childFolderCount": 1}],
                "@odata.nextLink": top_next,
            }
        ),
        ok({"value": [{"id": "sent", "displayName": "Sent Items", "childFolderCount": 0}]}),
        ok({"value": [{"id": "cust", "displayName": "Customers", "childFolderCount": 1}]}),
        ok({"value": [{"id": "acme", "displayName": "Acme", "childFolderCount": 0}]}),
    )

    # WHEN the folders are listed
    folders = graph.list_mail_folders(TOKEN)

    # THEN every folder has its path, and child folders were read by escaped parent id
    assert [(f["id"], f["path"]) for f in folders] == [
        ("inbox/id", "Inbox"),
        ("sent", "Sent Items"),
        ("cust", "Inbox/Customers"),
        ("acme", "Inbox/Customers/Acme"),
    ]
    assert [r.url for r in session.sent] == [
        f"{BASE}/me/mailFolders?$top=100",
        top_next,
        f"{BASE}/me/mailFolders/inbox%2Fid/childFolders",
        f"{BASE}/me/mailFolders/cust/childFolders",
    ]


@pytest.mark.parametrize(
    ("value", "items", "unreadable"),
    [
        ([{"id": "m1"}, "text", 5, None, [], {"id": "m2"}], [{"id": "m1"}, {"id": "m2"}], 4),
        ("not a list", [], 0),
        ({"id": "m1"}, [], 0),
        (None, [], 0),
    ],
)
def test_delta_page_keeps_only_entries_that_are_objects(value, items, unreadable):
    """A delta answer's entries that are not objects are left out of the page and counted."""
    # GIVEN a delta answer whose value holds entries of other shapes, or is no list at all
    graph, _, _ = client(ok({"value": value, "@odata.deltaLink": "d"}))

    # WHEN its pages are read
    [delta] = list(graph.delta_pages(TOKEN, "inbox", resume_url=None, since=None))

    # THEN only the objects are items, and the others are counted
    assert delta.items == items
    assert delta.unreadable == unreadable
    assert delta.delta_link == "d"


class ScriptedSession:
    """``requests.Session`` stand-in for writes: every request gets the next scripted answer."""

    def __init__(self, *script: requests.Response) -> None:
        self.script = list(script)

    def request(self, method: str, url: str, **_: Any) -> requests.Response:
        return self.script.pop(0)

    def put(self, url: str, **_: Any) -> requests.Response:
        return self.script.pop(0)


@pytest.mark.parametrize(("header", "wait"), [("9" * 400, MAX_RETRY_AFTER_S), ("", 5.0)])
def test_upload_range_throttled_carries_a_capped_wait(header, wait):
    """A throttled upload range asks for at most the cap, or the default wait without one."""
    # GIVEN an upload session that opens, then throttles its first range
    opened = ok({"uploadUrl": "https://upload.example.net/s1"})
    graph = GraphMailClient(BASE + "/", session=ScriptedSession(opened))  # type: ignore[arg-type]
    upload = ScriptedSession(response(429, "", {"Retry-After": header} if header else {}))
    sender = GraphSendClient(graph, session=upload)  # type: ignore[arg-type]

    # WHEN a file is uploaded THEN ThrottledError carries the capped or default wait
    with pytest.raises(ThrottledError) as caught:
        sender.upload_attachment(TOKEN, "m1", "a.pdf", "application/pdf", b"x" * 10)

    assert caught.value.retry_after_s == wait
