"""What the outbox worker is built from: Graph's sending calls, tenant settings and tokens.

Each is a :class:`typing.Protocol`, so the worker takes any object with these methods: in
production :class:`shared.adapters.graphsend.GraphSendClient`, the directory service and the
wiring's delegated token source for a user's mail connection (see :mod:`shared.wiring`); in
tests, hand-written fakes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from shared.directory.model import Tenant


class SendGraph(Protocol):
    """The Graph calls of sending (:class:`shared.adapters.graphsend.GraphSendClient`)."""

    def create_draft(self, token: str, message: Mapping[str, Any]) -> dict[str, Any]:
        """Create a draft."""
        ...

    def find_draft(self, token: str, header: str, value: str) -> dict[str, Any] | None:
        """Find the draft carrying an internet header."""
        ...

    def create_reply(
        self, token: str, original_id: str, message: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Create a reply draft."""
        ...

    def get_message(self, token: str, message_id: str) -> dict[str, Any]:
        """Read a message's folder and draft flag."""
        ...

    def attachment_count(self, token: str, message_id: str) -> int:
        """Count a draft's attachments."""
        ...

    def add_inline_attachment(
        self, token: str, message_id: str, name: str, content_type: str, content: bytes
    ) -> None:
        """Attach a small file."""
        ...

    def upload_attachment(
        self, token: str, message_id: str, name: str, content_type: str, content: bytes
    ) -> None:
        """Attach a large file through an upload session."""
        ...

    def send(self, token: str, message_id: str) -> None:
        """Send a draft."""
        ...

    def delete_message(self, token: str, message_id: str) -> None:
        """Delete a draft."""
        ...

    def mailbox_time_zone(self, token: str) -> str:
        """Return the mailbox's time zone name."""
        ...


class TenantSettings(Protocol):
    """Where the tenant's sending settings come from."""

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        """Return a tenant's settings."""
        ...

    def contact_time_zone(self, tenant_id: str, addresses: Sequence[str]) -> str | None:
        """Return the time zone of the first address that is a known contact with one."""
        ...


class TokenSource(Protocol):
    """Gives a delegated Graph token for a user's mail connection."""

    def __call__(self, tenant_id: str, user_id: str, *, force_refresh: bool = False) -> str:
        """Return a token, refreshed from the refresh token when ``force_refresh``."""
        ...
