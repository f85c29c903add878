"""The simulated Entra directory: users (with their tenant) and app registrations."""

from __future__ import annotations

from dataclasses import dataclass, field

from devstack.simulator import ids


@dataclass(frozen=True, slots=True)
class SimUser:
    """A user in a simulated tenant; ``oid`` is the mailbox key for Graph calls."""

    tenant_id: str
    upn: str
    display_name: str
    oid: str
    time_zone: str = "UTC"


@dataclass(frozen=True, slots=True)
class SimApp:
    """A confidential client registration; ``principal_oid`` is its identity for app tokens."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...] = ()
    principal_oid: str = field(default_factory=ids.guid)


class Directory:
    """Users and apps by their lookup keys; the caller holds the simulator lock."""

    def __init__(self) -> None:
        self._users_by_oid: dict[str, SimUser] = {}
        self._apps: dict[str, SimApp] = {}

    def add_user(self, user: SimUser) -> None:
        """Add ``user``, refusing a second user with the same UPN or oid."""
        if self.find_user(user.upn) is not None or user.oid in self._users_by_oid:
            message = f"user {user.oid} already exists (upn or oid taken)"
            raise ValueError(message)
        self._users_by_oid[user.oid] = user

    def find_user(self, key: str) -> SimUser | None:
        """Return the user whose oid or UPN (case-insensitive) is ``key``, or None."""
        if key in self._users_by_oid:
            return self._users_by_oid[key]
        folded = key.casefold()
        return next((u for u in self._users_by_oid.values() if u.upn.casefold() == folded), None)

    def get_user(self, key: str) -> SimUser:
        """Return the user whose oid or UPN is ``key``; raise KeyError when unknown."""
        user = self.find_user(key)
        if user is None:
            message = f"no simulated user with oid or upn {key!r}"
            raise KeyError(message)
        return user

    def is_known_tenant(self, tenant_id: str) -> bool:
        """Tell whether any user lives in ``tenant_id``."""
        return any(u.tenant_id == tenant_id for u in self._users_by_oid.values())

    def register_app(self, app: SimApp) -> None:
        """Add or replace the registration for ``app.client_id``."""
        self._apps[app.client_id] = app

    def find_app(self, client_id: str) -> SimApp | None:
        """Return the registration for ``client_id``, or None."""
        return self._apps.get(client_id)

    def find_app_by_principal(self, principal_oid: str) -> SimApp | None:
        """Return the app whose service principal has ``principal_oid``, or None."""
        return next((a for a in self._apps.values() if a.principal_oid == principal_oid), None)
