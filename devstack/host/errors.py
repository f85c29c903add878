"""Exception types of the local Functions host, grouped by what the caller does about them."""

from __future__ import annotations


class HostError(Exception):
    """Base class for every error the local Functions host raises on purpose."""


class HostConfigError(HostError):
    """Raised at start-up when host.json, a setting or a function's bindings cannot be used.

    The host refuses to start; the message names the file, setting or function at fault.
    """


class FunctionTimeoutError(HostError):
    """Raised (as an invocation outcome) when an invocation outlives host.json functionTimeout."""
