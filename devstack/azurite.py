"""Start and stop the Azurite storage emulator that ``package.json`` pins.

Each caller gets its own Azurite on free ports with in-memory persistence, so test runs and the
demo never share state or collide with an Azurite someone started by hand.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# The emulator's published well-known development key, not a secret.
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass
class Azurite:
    """A running Azurite process and how to reach it."""

    process: subprocess.Popen[bytes]
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        """The connection string for all three services."""
        base = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint={base}:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint={base}:{self.table_port}/{ACCOUNT};"
        )

    def stop(self) -> None:
        """Stop the emulator and wait for it to exit."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def azurite_binary() -> Path:
    """Return the pinned Azurite executable, installed by ``npm ci``."""
    binary = ROOT / "node_modules" / ".bin" / "azurite"
    if not binary.exists():
        message = f"Azurite is not installed at {binary}; run 'npm ci' in {ROOT}"
        raise FileNotFoundError(message)
    return binary


def start_azurite(
    workdir: Path, *, timeout_s: float = 30.0, keep_alive_s: int | None = None
) -> Azurite:
    """Start Azurite on free ports and wait until all three services accept connections.

    ``keep_alive_s`` keeps idle client connections open that long (Azurite's default is 5 s):
    a client that reuses a connection just as Azurite closes it sees it reset, and a POST is
    not retried, so long benchmarks on a busy machine raise it.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    ports = [free_port() for _ in range(3)]
    command = [
        str(azurite_binary()),
        "--silent",
        "--inMemoryPersistence",
        "--skipApiVersionCheck",
        "--loose",
        "--disableTelemetry",
        "--blobPort",
        str(ports[0]),
        "--queuePort",
        str(ports[1]),
        "--tablePort",
        str(ports[2]),
    ]
    if keep_alive_s is not None:
        for service in ("blob", "queue", "table"):
            command += [f"--{service}KeepAliveTimeout", str(keep_alive_s)]
    node = shutil.which("node")
    if node is None:
        message = "Node.js is required to run Azurite and was not found on PATH"
        raise FileNotFoundError(message)
    log = (workdir / "azurite.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    azurite = Azurite(process, *ports)
    _wait_for_ports(azurite, ports, timeout_s)
    return azurite


def _wait_for_ports(azurite: Azurite, ports: list[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(ports)
    while pending:
        if azurite.process.poll() is not None:
            message = f"Azurite exited with code {azurite.process.returncode} during start-up"
            raise RuntimeError(message)
        if time.monotonic() > deadline:
            azurite.stop()
            message = f"Azurite did not open ports {pending} within {timeout_s} s"
            raise TimeoutError(message)
        try:
            with socket.create_connection(("127.0.0.1", pending[0]), timeout=0.5):
                pending.pop(0)
        except OSError:
            time.sleep(0.1)
