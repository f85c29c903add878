"""The HTML a browser sees during sign-in: the consent page, error pages and form_post replies."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from devstack.simulator.grants import AuthorizeRequest

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body>
<h1>{title}</h1>
{content}
</body></html>
"""


def _page(title: str, content: str, status: int = 200) -> Response:
    text = _PAGE.format(title=escape(title), content=content)
    return Response(text, status=status, content_type="text/html; charset=utf-8")


def error_page(message: str, status: int = 400) -> Response:
    """Return the page Entra shows when it cannot send the user back to the app."""
    return _page("Sign in error", f'<p id="error">{escape(message)}</p>', status)


def _form(action: str, request: AuthorizeRequest, decision: str, ask_user: bool) -> str:
    user_field = ""
    if ask_user and decision == "accept":
        user_field = '<label>Account <input type="email" name="user" required></label>\n'
    label = "Accept" if decision == "accept" else "Cancel"
    return (
        f'<form method="post" action="{escape(action)}" id="{decision}">\n'
        f'<input type="hidden" name="txn" value="{escape(request.txn)}">\n'
        f'<input type="hidden" name="decision" value="{decision}">\n'
        f"{user_field}"
        f'<button type="submit">{label}</button>\n</form>'
    )


def consent_page(
    action: str, request: AuthorizeRequest, *, app_name: str, user_name: str | None
) -> Response:
    """Return the consent prompt with an accept form and a decline form posting to ``action``."""
    who = f"<p>Signed in as {escape(user_name)}</p>" if user_name else "<p>Pick an account.</p>"
    scopes = "".join(f"<li>{escape(s)}</li>" for s in request.scopes)
    content = (
        f"{who}\n<p>{escape(app_name)} wants to:</p>\n<ul>{scopes}</ul>\n"
        f"{_form(action, request, 'accept', user_name is None)}\n"
        f"{_form(action, request, 'decline', user_name is None)}"
    )
    return _page("Permissions requested", content)


def form_post_page(redirect_uri: str, params: dict[str, str]) -> Response:
    """Return the self-submitting form that delivers an authorize result by ``form_post``."""
    fields = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">\n' for k, v in params.items()
    )
    content = (
        f'<form method="post" action="{escape(redirect_uri)}" id="response">\n{fields}'
        '<noscript><button type="submit">Continue</button></noscript>\n</form>\n'
        "<script>document.getElementById('response').submit()</script>"
    )
    return _page("Working...", content)
