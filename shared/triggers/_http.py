"""What every HTTP trigger shares: JSON in and out, errors as JSON, the caller from the token.

Errors become a 4xx with a JSON body ``{"error": {"code", "message", "field"?, "rule"?,
"reason"?}}``; a failed consent callback names its query parameter as the ``field``. A request
Graph refused becomes a 502 ``graph_refused`` with Graph's error code as the ``reason``. An
unexpected exception becomes a 500 whose body says nothing about the cause, which is logged with
the invocation's ids only.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import azure.functions as func

from shared import errors
from shared.access.auth import Caller
from shared.sending.message import TooLargeError
from shared.wiring import services

logger = logging.getLogger(__name__)

Handler = Callable[[func.HttpRequest], func.HttpResponse]


class UnsupportedMediaError(errors.ValidationError):
    """Raised when a request body comes with a Content-Type the endpoint does not read."""


_STATUS: list[tuple[type[Exception], int, str]] = [
    (errors.StorageLimitError, 500, "internal"),
    (UnsupportedMediaError, 415, "unsupported_media_type"),
    (TooLargeError, 413, "too_large"),
    (errors.ValidationError, 400, "invalid_input"),
    (errors.ConsentError, 400, "consent_failed"),
    (errors.AuthenticationError, 401, "unauthenticated"),
    (errors.ForbiddenError, 403, "forbidden"),
    (errors.NotFoundError, 404, "not_found"),
    (errors.ConflictError, 409, "conflict"),
    (errors.ReauthRequiredError, 409, "reauth_required"),
    (errors.ThrottledError, 503, "throttled"),
    (errors.TransientError, 503, "unavailable"),
    (errors.GraphRequestError, 502, "graph_refused"),
]


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    """Return a JSON response."""
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        mimetype="application/json",
        charset="utf-8",
        headers=headers,
    )


def error_response(error: Exception) -> func.HttpResponse:
    """Translate a product error into its HTTP status and JSON body."""
    for kind, status, code in _STATUS:
        if isinstance(error, kind):
            return json_response({"error": _error_body(error, code)}, status, _headers(error))
    logger.error(
        "unhandled error in http trigger",
        exc_info=error,
        extra={"error_type": type(error).__name__},
    )
    return json_response({"error": {"code": "internal", "message": "internal error"}}, 500)


def _error_body(error: Exception, code: str) -> dict[str, str]:
    body = {"code": code, "message": str(error)}
    if isinstance(error, errors.ValidationError):
        body.update(field=error.field, rule=error.rule)
    if isinstance(
        error, errors.ConsentError | errors.ReauthRequiredError | errors.GraphRequestError
    ):
        body["reason"] = error.code
    if isinstance(error, errors.ConsentError) and error.field:
        body["field"] = error.field
    return body


def _headers(error: Exception) -> dict[str, str] | None:
    if isinstance(error, errors.AuthenticationError):
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    if isinstance(error, errors.ThrottledError):
        return {"Retry-After": str(error.delay_s)}
    return None


def handled(handler: Handler) -> Handler:
    """Turn exceptions raised by a trigger body into JSON error responses."""

    @functools.wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return handler(req)
        except Exception as error:  # noqa: BLE001 - the boundary where every error becomes HTTP
            return error_response(error)

    return wrapper


def caller_of(req: func.HttpRequest) -> Caller:
    """Authenticate the request's bearer token.

    Raises:
        AuthenticationError: when the token is missing or invalid.
    """
    return services().authenticator.authenticate(req.headers.get("Authorization"))


def json_body(req: func.HttpRequest) -> Any:
    r"""Parse the request body as JSON text that is valid Unicode.

    Raises:
        ValidationError: when the body is empty, not JSON, nested absurdly deep, or holds a
            lone surrogate escape such as ``\ud800`` that no storage can keep.
        UnsupportedMediaError: when the Content-Type says the body is something else.
    """
    content_type = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaError(field="Content-Type", rule="must be application/json")
    raw = req.get_body()
    if not raw:
        raise errors.ValidationError(field="body", rule="must be a JSON document")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as error:
        # ValueError covers bad JSON, bad UTF-8 and integers past Python's 4,300-digit limit.
        raise errors.ValidationError(field="body", rule="must be valid JSON") from error
    check_text(body, "body")
    return body


def check_text(value: Any, field: str) -> None:
    """Refuse JSON strings that are not valid Unicode text (lone surrogates).

    Raises:
        ValidationError: naming the first offending field.
    """
    pending: list[tuple[Any, str]] = [(value, field)]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            _check_string(item, path)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_string(key, path)
                pending.append((child, f"{path}.{key}" if path != "body" else key))
        elif isinstance(item, list):
            pending.extend((child, f"{path}[{index}]") for index, child in enumerate(item))


def _check_string(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise errors.ValidationError(path, "must be valid Unicode text") from error


def json_object(req: func.HttpRequest) -> dict[str, Any]:
    """Parse the request body as a JSON object.

    Raises:
        ValidationError: when the body is not a JSON object.
    """
    body = json_body(req)
    if not isinstance(body, dict):
        raise errors.ValidationError(field="body", rule="must be a JSON object")
    return body


def query_int(req: func.HttpRequest, name: str, default: int, *, low: int, high: int) -> int:
    """Read an integer query parameter within bounds.

    Raises:
        ValidationError: when the value is not a whole number within the bounds.
    """
    raw = req.params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise errors.ValidationError(name, f"must be a whole number from {low} to {high}")
    return int(raw)
