"""Operator commands, run beside the app with the same settings: ``python -m shared.maintenance``.

``rotate-token-key`` writes a new version of the token-encryption key (32 random bytes, base64)
to the Key Vault secret named by ``TOKEN_KEY_SECRET_NAME``. Every sealed value records the key
version that sealed it, so values sealed before still open; workers seal with the new version
once their cached copy of the current one expires (five minutes at most). When the key was
soft-deleted, the command recovers it with all its old versions before writing the new one; it
never purges. If Key Vault refuses the recovery, it exits 1 saying what to do.

``rebuild-tenant-index`` scans the connections table and indexes the tenant of every connection
(:meth:`shared.sync.fleet.FleetIndex.rebuild_tenant_index`), for connections stored
before the fan-out's tenant index existed: the fan-out only visits indexed tenants. Running it
again changes nothing.

Known limitations: values sealed with an old version are not re-sealed. An old version disabled
or purged in Key Vault makes every connection whose token cache it sealed wait for its user to
consent again (``reauth_required``, one notice each), so keep old versions enabled.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import sys
from typing import TYPE_CHECKING

from shared.errors import ConfigError, SyncError
from shared.settings import Settings
from shared.wiring import Services

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

KEY_BYTES = 32


def rotate_token_key(services: Services) -> str:
    """Write a new random token-encryption key version; return the version id.

    Raises:
        SecretStoreError: when Key Vault does not store it.
        TransientError: when Key Vault cannot be reached.
    """
    name = services.settings.token_key_secret_name
    value = base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")
    return services.secrets.set(name, value).version


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run one maintenance command; return the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m shared.maintenance")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("rotate-token-key", help="write a new token-encryption key version")
    commands.add_parser(
        "rebuild-tenant-index", help="index the tenant of every stored connection for the fan-out"
    )
    command = parser.parse_args(argv).command

    try:
        services = Services(Settings.from_env(env))
        if command == "rebuild-tenant-index":
            tenants = services.connections.rebuild_tenant_index()
        else:
            version = rotate_token_key(services)
    except ConfigError as error:
        sys.stderr.write(f"settings: {error}\n")
        return 2
    except SyncError as error:
        sys.stderr.write(f"{command} failed: {error}\n")
        return 1
    if command == "rebuild-tenant-index":
        sys.stdout.write(f"tenant index rebuilt: {tenants} tenants with connections\n")
    else:
        name = services.settings.token_key_secret_name
        sys.stdout.write(f"token key rotated: {name} {version}\n")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
