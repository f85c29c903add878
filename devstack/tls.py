"""Test TLS material for the local stack: one throwaway CA and one loopback server certificate.

The simulator serves HTTPS with the server certificate; the product process trusts the CA through
``REQUESTS_CA_BUNDLE`` and ``SSL_CERT_FILE``, exactly as it would trust a public CA in Azure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import trustme

if TYPE_CHECKING:
    from pathlib import Path

SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """Paths of the PEM files that make up the stack's TLS set-up."""

    ca_pem: Path
    cert_pem: Path
    key_pem: Path


def create_tls_material(directory: Path) -> TlsMaterial:
    """Create a test CA and a server certificate for the loopback names in ``directory``.

    Args:
        directory: Where to write ``ca.pem``, ``server.pem`` and ``server.key``; created if missing.

    Returns:
        The paths of the three files.
    """
    directory.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA()
    server = authority.issue_cert(*SERVER_NAMES)
    material = TlsMaterial(
        ca_pem=directory / "ca.pem",
        cert_pem=directory / "server.pem",
        key_pem=directory / "server.key",
    )
    authority.cert_pem.write_to_path(str(material.ca_pem))
    server.cert_chain_pems[0].write_to_path(str(material.cert_pem))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(material.cert_pem), append=True)
    server.private_key_pem.write_to_path(str(material.key_pem))
    material.key_pem.chmod(0o600)
    return material
