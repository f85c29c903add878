"""Microsoft Graph adapter for mail: folders, per-folder message delta, single messages.

Every request asks for immutable ids, so a message keeps its id when it moves between folders.
Throttling (429, 503, 504) is retried here with ``Retry-After`` (seconds or an HTTP date) while
the wait is short, and without one after an exponential backoff with jitter; a longer wait
raises :class:`ThrottledError` so the job goes back on the queue instead of sleeping inside a
function. Delta cursors Graph no longer knows raise
:class:`DeltaCursorExpiredError`.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

from shared.errors import (
    AccessTokenRejectedError,
    DeltaCursorExpiredError,
    GraphRequestError,
    NotFoundError,
    ReauthRequiredError,
    ThrottledError,
    TransientError,
    capped_wait,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

logger = logging.getLogger(__name__)

MESSAGE_FIELDS = (
    "id",
    "internetMessageId",
    "conversationId",
    "subject",
    "bodyPreview",
    "body",
    "from",
    "sender",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "receivedDateTime",
    "sentDateTime",
    "parentFolderId",
    "isDraft",
    "hasAttachments",
    "internetMessageHeaders",
)
EXPIRED_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
RETRY_STATUSES = frozenset({429, 503, 504})
MAX_INLINE_WAIT_S = 10.0
MAX_ATTEMPTS = 4
TIMEOUT_S = 60.0
_RANDOM = secrets.SystemRandom()


@dataclass(frozen=True, slots=True)
class DeltaPage:
    """One page of a delta round: items and exactly one of the next or delta link.

    ``unreadable`` counts the entries of the page that were not JSON objects, left out of
    ``items`` so that no caller trips on them.
    """

    items: list[dict[str, Any]]
    next_link: str | None
    delta_link: str | None
    unreadable: int = 0

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> DeltaPage:
        """Return the page a delta answer's body holds: only its entries that are objects."""
        value = body.get("value")
        entries = value if isinstance(value, list) else []
        items = [entry for entry in entries if isinstance(entry, dict)]
        return cls(
            items=items,
            next_link=body.get("@odata.nextLink"),
            delta_link=body.get("@odata.deltaLink"),
            unreadable=len(entries) - len(items),
        )


@dataclass(slots=True)
class RequestCounter:
    """Counts Graph requests and throttled answers for a job's summary line.

    A mail job's folder threads share one client, so every count moves under :attr:`lock`.
    """

    requests: int = 0
    throttled: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, *, status: int | None = None, throttled: bool = False) -> None:
        """Count one request sent (no status), its answer's status, or a throttled answer."""
        with self.lock:
            if throttled:
                self.throttled += 1
            elif status is None:
                self.requests += 1
            else:
                self.by_status[status] = self.by_status.get(status, 0) + 1


class GraphMailClient:
    """Calls Graph v1.0 on behalf of one user at a time."""

    def __init__(
        self,
        base_url: str,
        *,
        page_size: int = 50,
        session: requests.Session | None = None,
        sleep: Any = time.sleep,
        jitter: Callable[[], float] = _RANDOM.random,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._page_size = page_size
        self._session = session or requests.Session()
        self._sleep = sleep
        self._jitter = jitter
        self.counter = RequestCounter()

    def get_me(self, token: str) -> dict[str, Any]:
        """Return the signed-in user's profile."""
        return self._get(f"{self._base}/me", token)

    def list_mail_folders(self, token: str) -> list[dict[str, Any]]:
        """Return every mail folder, children included, each with a ``path`` of display names."""
        folders: list[dict[str, Any]] = []
        pending: list[tuple[str, str]] = [(f"{self._base}/me/mailFolders?$top=100", "")]
        while pending:
            url, parent_path = pending.pop(0)
            for folder in self._list(url, token):
                path = f"{parent_path}/{folder.get('displayName', '')}".lstrip("/")
                folders.append({**folder, "path": path})
                if folder.get("childFolderCount"):
                    child = quote(str(folder["id"]), safe="")
                    pending.append((f"{self._base}/me/mailFolders/{child}/childFolders", path))
        return folders

    def get_folder(self, token: str, folder: str) -> dict[str, Any]:
        """Return one mail folder by id or well-known name (``inbox``, ``sentitems``, ...)."""
        return self._get(f"{self._base}/me/mailFolders/{quote(folder, safe='')}", token)

    def get_message(self, token: str, message_id: str) -> dict[str, Any]:
        """Return one message by immutable id.

        Raises:
            NotFoundError: when the message no longer exists in the mailbox.
        """
        url = f"{self._base}/me/messages/{quote(message_id, safe='')}?$select=id,parentFolderId"
        return self._get(url, token)

    def delta_pages(
        self, token: str, folder_id: str, *, resume_url: str | None, since: datetime | None
    ) -> Iterator[DeltaPage]:
        """Yield the pages of one folder's delta round, from a stored link or from scratch.

        Raises:
            DeltaCursorExpiredError: when Graph no longer knows the link.
        """
        url: str | None = resume_url or self._initial_delta_url(folder_id, since)
        while url:
            body = self._get(url, token, prefer_page_size=True)
            page = DeltaPage.of(body)
            yield page
            url = page.next_link

    def _initial_delta_url(self, folder_id: str, since: datetime | None) -> str:
        select = ",".join(MESSAGE_FIELDS)
        url = f"{self._base}/me/mailFolders/{quote(folder_id, safe='')}/messages/delta"
        url += f"?$select={select}"
        if since is not None:
            # The filter's literal is UTC; a window start in another zone must be converted.
            stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            url += f"&$filter=receivedDateTime%20ge%20{stamp}"
        return url

    def _list(self, url: str, token: str) -> Iterator[dict[str, Any]]:
        next_url: str | None = url
        while next_url:
            body = self._get(next_url, token)
            yield from body.get("value") or []
            next_url = body.get("@odata.nextLink")

    def _get(self, url: str, token: str, *, prefer_page_size: bool = False) -> dict[str, Any]:
        prefer = (f"odata.maxpagesize={self._page_size}",) if prefer_page_size else ()
        return self.call("GET", url, token, prefer=prefer)

    def call(
        self,
        method: str,
        url: str,
        token: str,
        *,
        prefer: tuple[str, ...] = (),
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send one Graph request with immutable ids, retrying short throttling waits.

        Raises:
            ThrottledError: when Graph keeps throttling past the in-invocation wait budget.
            DeltaCursorExpiredError: when Graph refuses a delta or next link.
            AccessTokenRejectedError: on 401; a forced token refresh may fix it.
            ReauthRequiredError: on 403.
            NotFoundError: on 404.
            TransientError: on 5xx or when Graph cannot be reached.
            GraphRequestError: on any other error status.
        """
        headers = {
            "Authorization": f"Bearer {token}",
            "Prefer": ", ".join(('IdType="ImmutableId"', *prefer)),
        }
        for attempt in range(1, MAX_ATTEMPTS + 1):
            response = self._send(method, url, headers, body)
            if response.status_code not in RETRY_STATUSES:
                return _body_or_raise(response)
            wait = retry_after(response)
            if wait is None:
                wait = _backoff(attempt, self._jitter())
            self.counter.count(throttled=True)
            if wait > MAX_INLINE_WAIT_S or attempt == MAX_ATTEMPTS:
                message = f"Graph answered {response.status_code} after {attempt} attempts"
                raise ThrottledError(message, retry_after_s=max(wait, 1.0))
            logger.debug("graph throttled, waiting", extra={"retry_after_s": wait})
            self._sleep(wait)
        message = "unreachable: the retry loop always returns or raises"
        raise AssertionError(message)

    @property
    def base_url(self) -> str:
        """The Graph v1.0 root this client calls."""
        return self._base

    @property
    def page_size(self) -> int:
        """The page size asked for with ``odata.maxpagesize``."""
        return self._page_size

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: Mapping[str, Any] | None
    ) -> requests.Response:
        self.counter.count()
        try:
            if method == "GET":
                response = self._session.get(url, headers=dict(headers), timeout=TIMEOUT_S)
            else:
                response = self._session.request(
                    method, url, headers=dict(headers), json=body, timeout=TIMEOUT_S
                )
        except requests.RequestException as error:
            msg = "Graph could not be reached"
            raise TransientError(msg) from error
        status = response.status_code
        self.counter.count(status=status)
        return response


def retry_after(response: requests.Response) -> float | None:
    """Return the wait ``Retry-After`` asks for, in seconds or as an HTTP date; None without.

    The wait is capped at :data:`shared.errors.MAX_RETRY_AFTER_S`: a header of hundreds of
    digits, or a date centuries ahead, asks for no longer than that.
    """
    header = response.headers.get("Retry-After", "").strip()
    if header.isascii() and header.isdigit():
        # float() of a very long number is infinite, never an error; the cap bounds it.
        return capped_wait(float(header))
    try:
        when = parsedate_to_datetime(header)
        wait = (when - datetime.now(UTC)).total_seconds() if when.tzinfo else None
    except (TypeError, ValueError, OverflowError):
        return None
    return None if wait is None else capped_wait(wait)


def _backoff(attempt: int, jitter: float) -> float:
    # Jitter keeps workers throttled together from coming back together (msgraph-sdk-dotnet#250).
    base = float(2**attempt)
    return base * (1.0 - jitter / 2)


def _error_codes(body: Any) -> list[str]:
    codes: list[str] = []
    node = body.get("error") if isinstance(body, dict) else None
    while isinstance(node, dict):
        if node.get("code"):
            codes.append(str(node["code"]))
        node = node.get("innerError") or node.get("innererror")
    return codes


def _body_or_raise(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json() if response.content else {}
    except ValueError:
        body = {}
    if response.ok and isinstance(body, dict):
        return body
    codes = _error_codes(body)
    request_id = response.headers.get("request-id", "")
    if response.status_code == 410 or EXPIRED_CODES & {code.lower() for code in codes}:
        msg = f"Graph refused the delta link (request-id {request_id})"
        raise DeltaCursorExpiredError(msg)
    if response.status_code == 401:
        msg = f"Graph refused the access token (request-id {request_id})"
        raise AccessTokenRejectedError(msg)
    if response.status_code == 403:
        msg = f"Graph denied access to the mailbox (request-id {request_id})"
        code = "graph_forbidden"
        raise ReauthRequiredError(code, msg)
    if response.status_code == 404:
        msg = f"Graph item not found (request-id {request_id})"
        raise NotFoundError(msg)
    if response.status_code >= 500:
        msg = f"Graph answered {response.status_code} (request-id {request_id})"
        raise TransientError(msg)
    code = codes[0] if codes else "unknown"
    message = f"Graph answered {response.status_code} {code} (request-id {request_id})"
    raise GraphRequestError(message, response.status_code, code)
