"""Injected failures and the log of requests the simulator served."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class FaultRule:
    """A canned response for matching requests.

    Attributes:
        path: Regular expression searched in the request path (e.g. ``/messages/delta$``).
        status: HTTP status to answer with.
        method: HTTP method to match, or None for any.
        service: ``identity``, ``graph``, ``vault`` or ``control`` to match, or None for any.
        user: Oid or UPN of the user the request acts for, or None for anyone.
        body: JSON body of the response, or None for an empty body.
        headers: Extra response headers, e.g. ``{"Retry-After": "2"}``.
        count: How many matching requests get the fault; None means all of them.
        after: How many matching requests to serve normally before the fault starts.
        delay_s: Seconds to wait before answering; with ``status`` 0 the request is then
            served normally, which makes a slow Graph rather than a failing one.
    """

    path: str
    status: int
    method: str | None = None
    service: str | None = None
    user: str | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    count: int | None = 1
    after: int = 0
    delay_s: float = 0.0

    def matches(self, service: str, method: str, path: str, user_keys: tuple[str, ...]) -> bool:
        """Tell whether this rule applies to a request."""
        if self.count is not None and self.count <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.service is not None and self.service != service:
            return False
        if self.user is not None and self.user.casefold() not in user_keys:
            return False
        return re.search(self.path, path) is not None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One served request, without query string, bodies or headers that may hold secrets.

    Attributes:
        prefer: The request's ``Prefer`` header values as sent (``outlook.timezone``,
            ``odata.maxpagesize``, ``IdType``), so tests can see what the product asked for.
    """

    service: str
    method: str
    path: str
    user: str | None
    status: int
    prefer: tuple[str, ...] = ()


class FaultBook:
    """Active fault rules in the order they were added; the caller holds the lock."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        """Activate ``rule`` after the existing ones."""
        re.compile(rule.path)
        self._rules.append(rule)

    def clear(self) -> None:
        """Drop every rule."""
        self._rules.clear()

    def take(
        self, service: str, method: str, path: str, user_keys: tuple[str, ...]
    ) -> FaultRule | None:
        """Return the first rule matching the request and use up one of its count."""
        folded = tuple(k.casefold() for k in user_keys)
        for rule in self._rules:
            if rule.matches(service, method, path, folded):
                if rule.after > 0:
                    rule.after -= 1
                    continue
                if rule.count is not None:
                    rule.count -= 1
                return rule
        return None
