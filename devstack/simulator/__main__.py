"""Run the simulator standalone: ``python -m devstack.simulator --state-dir .stack/sim``.

Prints one JSON line with the URLs (and the CA bundle to trust), then serves until interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from pathlib import Path

from devstack.simulator.simulator import Simulator
from devstack.tls import create_tls_material


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="identity + Graph port (0: any)")
    parser.add_argument("--vault-port", type=int, default=0, help="Key Vault port (0: any)")
    parser.add_argument("--state-dir", type=Path, default=Path(".stack/simulator"))
    parser.add_argument("--api-audience", default="api://outlook-sync")
    parser.add_argument("--vault-tenant-id", default=None)
    return parser.parse_args()


def main() -> None:
    """Start the simulator and block until Ctrl+C."""
    args = _arguments()
    logging.basicConfig(level=logging.INFO)
    tls = create_tls_material(args.state_dir / "tls")
    simulator = Simulator(tls, api_audience=args.api_audience, vault_tenant_id=args.vault_tenant_id)
    simulator.start(args.host, args.port, args.vault_port)
    urls = {
        "base_url": simulator.base_url,
        "authority_host": simulator.authority_host,
        "graph_url": simulator.graph_url,
        "vault_url": simulator.vault_url,
        "vault_tenant_id": simulator.vault_tenant_id,
        "ca_pem": str(tls.ca_pem),
    }
    print(json.dumps(urls), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        simulator.stop()


if __name__ == "__main__":
    main()
