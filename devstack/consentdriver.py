"""Play the person in the browser during an authorization code sign-in.

``drive_consent`` opens the authorize URL over real HTTPS, reads the consent page's forms, submits
the chosen decision and returns where the identity provider sends the browser back to the app,
without following it. Any Entra-like page with forms carrying ``txn`` and ``decision`` fields works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin

import requests

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
TIMEOUT_S = 10


class ConsentError(Exception):
    """Raised when the identity provider answers with an error page instead of a redirect."""


@dataclass(slots=True)
class _Form:
    action: str
    fields: dict[str, str] = field(default_factory=dict)


class _FormReader(HTMLParser):
    """Collects forms with their hidden/preset inputs, and the text of an ``id="error"`` element."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self.error_text = ""
        self._in_error = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(_Form(found.get("action", "")))
        elif tag == "input" and self.forms and found.get("name"):
            self.forms[-1].fields[found["name"]] = found.get("value", "")
        self._in_error = found.get("id") == "error"

    def handle_data(self, data: str) -> None:
        if self._in_error:
            self.error_text += data

    def handle_endtag(self, tag: str) -> None:
        self._in_error = False


def _read(page: requests.Response) -> _FormReader:
    reader = _FormReader()
    reader.feed(page.text)
    return reader


def _outcome(page: requests.Response) -> str:
    if page.status_code in REDIRECT_STATUSES:
        return page.headers["Location"]
    reader = _read(page)
    posted = next((f for f in reader.forms if "txn" not in f.fields), None)
    if page.status_code == 200 and posted is not None:
        # response_mode=form_post: give the callback's form fields back as a query string.
        return f"{urljoin(page.url, posted.action)}?{urlencode(posted.fields)}"
    message = f"sign-in stopped with HTTP {page.status_code}: {reader.error_text.strip()}"
    raise ConsentError(message)


def drive_consent(
    authorize_url: str, *, decision: str = "accept", user: str | None = None, verify: str | bool
) -> str:
    """Open ``authorize_url``, answer the consent page and return the redirect back to the app.

    Args:
        authorize_url: The ``auth_uri`` the app sent the browser to.
        decision: ``accept`` or ``decline``.
        user: The account to sign in with when the page asks for one (no ``login_hint``).
        verify: A CA bundle path or a bool, as for ``requests``.

    Returns:
        The ``Location`` the identity provider redirects to: the app's callback URL with
        ``code`` and ``state``, or with ``error`` and ``error_description``.

    Raises:
        ConsentError: The provider showed an error page, or the page has no form for
            ``decision``.
    """
    # NOTE: verify goes on each call; requests lets REQUESTS_CA_BUNDLE override Session.verify.
    with requests.Session() as session:
        page = session.get(authorize_url, allow_redirects=False, timeout=TIMEOUT_S, verify=verify)
        if page.status_code != 200:
            return _outcome(page)
        forms = [f for f in _read(page).forms if f.fields.get("decision") == decision]
        if not forms:
            message = f"the consent page has no form for decision {decision!r}"
            raise ConsentError(message)
        data = dict(forms[0].fields)
        if user is not None:
            data["user"] = user
        action = urljoin(page.url, forms[0].action)
        reply = session.post(
            action, data=data, allow_redirects=False, timeout=TIMEOUT_S, verify=verify
        )
        return _outcome(reply)
