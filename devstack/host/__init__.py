"""A local Azure Functions host for the Python v2 programming model.

Run it with ``python -m devstack.host --app-dir DIR``, or in-process through :class:`LocalHost`.
"""

from devstack.host.errors import HostConfigError, HostError
from devstack.host.localhost import LocalHost

__all__ = ["HostConfigError", "HostError", "LocalHost"]
