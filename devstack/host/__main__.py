"""Command line entry point: ``python -m devstack.host [--app-dir DIR] [--port N] [--host H]``.

Exits with status 2 and a one-line reason on stderr when the app cannot be loaded, and with 0
after a clean shutdown on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from devstack.host.errors import HostConfigError
from devstack.host.localhost import LocalHost
from devstack.host.logs import configure_logging

if TYPE_CHECKING:
    from types import FrameType

logger = logging.getLogger("devstack.host")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.host", description="Run a Python v2 function app locally."
    )
    parser.add_argument("--app-dir", type=Path, default=Path.cwd(), help="holds function_app.py")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (default 7071)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the host until SIGINT or SIGTERM; return the process exit status."""
    args = parse_args(argv)
    try:
        configure_logging(os.environ.get("HOST_LOG_LEVEL", "INFO"))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    stopping = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("shutdown requested", extra={"signal": signal.Signals(signum).name})
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    host = LocalHost(args.app_dir, host=args.host, port=args.port)
    try:
        host.start()
    except (HostConfigError, OSError) as error:
        print(f"error: the host could not start: {error}", file=sys.stderr)
        return 2

    while not stopping.wait(1.0):
        continue
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
