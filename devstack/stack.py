"""The local stack: Azurite, the Microsoft 365 simulator and the local Functions host, together.

:class:`LocalStack` starts all three for real (Azurite and the host as processes, the simulator
as HTTPS servers in this process), seeds Key Vault with the app's client secret and a fresh
token encryption key, registers the app in the simulated identity platform, and hands the
product the same settings it reads on Azure. Tests and the demo drive it through the
product's own HTTP API.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from azure.storage.queue import QueueClient

from devstack.azurite import Azurite, free_port, start_azurite
from devstack.consentdriver import drive_consent
from devstack.simulator import Simulator
from devstack.tls import TlsMaterial, create_tls_material

ROOT = Path(__file__).resolve().parent.parent
API_AUDIENCE = "api://outlook-sync-local"
CLIENT_ID = "6f1c2d3e-0000-4000-8000-00000000a001"
APP_IDENTITY_ID = "6f1c2d3e-0000-4000-8000-00000000b002"
APP_TENANT_ID = "6f1c2d3e-0000-4000-8000-00000000c003"
CLIENT_SECRET_NAME = "microsoft-client-secret"  # noqa: S105 - a Key Vault secret name
TOKEN_KEY_NAME = "token-encryption-key"  # noqa: S105 - a Key Vault secret name
MAIL_QUEUE = "mail-sync"


@dataclass
class LocalStack:
    """Everything the product needs, running on this machine."""

    workdir: Path
    host_port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    azurite: Azurite | None = None
    simulator: Simulator | None = None
    host: subprocess.Popen[bytes] | None = None
    tls: TlsMaterial | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        """The base URL of the product's HTTP API."""
        return f"http://127.0.0.1:{self.host_port}/api"

    @property
    def admin_url(self) -> str:
        """The base URL of the local host's admin API."""
        return f"http://127.0.0.1:{self.host_port}/admin"

    @property
    def sim(self) -> Simulator:
        """The running simulator."""
        if self.simulator is None:
            message = "the stack is not started"
            raise RuntimeError(message)
        return self.simulator

    def _azurite(self) -> Azurite:
        if self.azurite is None:
            message = "the stack is not started"
            raise RuntimeError(message)
        return self.azurite

    def _tls(self) -> TlsMaterial:
        if self.tls is None:
            message = "the stack is not started"
            raise RuntimeError(message)
        return self.tls

    def start(self) -> LocalStack:
        """Start Azurite, the simulator and the host, and wait until the API answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls = create_tls_material(self.workdir / "tls")
        self.azurite = start_azurite(self.workdir / "azurite")
        self.simulator = Simulator(
            self.tls, api_audience=API_AUDIENCE, vault_tenant_id=APP_TENANT_ID
        )
        self.simulator.start()
        self.host_port = self.host_port or free_port()
        client_secret = secrets.token_urlsafe(32)
        identity_secret = secrets.token_urlsafe(32)
        redirect = f"http://127.0.0.1:{self.host_port}/api/consent/callback"
        self.simulator.register_app(CLIENT_ID, client_secret, redirect_uris=(redirect,))
        self.simulator.register_app(APP_IDENTITY_ID, identity_secret)
        self.simulator.vault_set(CLIENT_SECRET_NAME, client_secret)
        self.simulator.vault_set(TOKEN_KEY_NAME, base64.b64encode(os.urandom(32)).decode("ascii"))
        self.env = self._settings(redirect, identity_secret)
        self._start_host()
        return self

    def _settings(self, redirect: str, identity_secret: str) -> dict[str, str]:
        sim, azurite, tls = self.sim, self._azurite(), self._tls()
        return {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "AzureWebJobsStorage": azurite.connection_string,
            "GRAPH_BASE_URL": sim.graph_url,
            "IDENTITY_AUTHORITY_HOST": sim.authority_host,
            "MSAL_AUTHORITY_TENANT": "organizations",
            "MICROSOFT_CLIENT_ID": CLIENT_ID,
            "MICROSOFT_CLIENT_SECRET_NAME": CLIENT_SECRET_NAME,
            "TOKEN_KEY_SECRET_NAME": TOKEN_KEY_NAME,
            "KEY_VAULT_URL": sim.vault_url,
            "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": "false",
            "API_AUDIENCE": API_AUDIENCE,
            "CONSENT_REDIRECT_URI": redirect,
            "GRAPH_PAGE_SIZE": "25",
            "AZURE_TENANT_ID": APP_TENANT_ID,
            "AZURE_CLIENT_ID": APP_IDENTITY_ID,
            "AZURE_CLIENT_SECRET": identity_secret,
            "AZURE_AUTHORITY_HOST": sim.authority_host,
            "REQUESTS_CA_BUNDLE": str(tls.ca_pem),
            "SSL_CERT_FILE": str(tls.ca_pem),
            **self.extra_env,
        }

    def _start_host(self) -> None:
        log = (self.workdir / "host.log").open("ab")
        env = {**os.environ, **self.env}
        command = [sys.executable, "-m", "devstack.host", "--app-dir", str(ROOT)]
        command += ["--port", str(self.host_port)]
        self.host = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.host.poll() is not None:
                message = f"the functions host exited with {self.host.returncode}; see {log.name}"
                raise RuntimeError(message)
            try:
                if requests.get(f"{self.api_url}/health", timeout=2).ok:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        message = f"the functions host did not answer within 60 s; see {log.name}"
        raise TimeoutError(message)

    def kill_host(self) -> None:
        """Kill the functions host at once, as a crashed worker dies, then start a new one."""
        if self.host is not None:
            self.host.kill()
            self.host.wait()
        self._start_host()

    def stop(self) -> None:
        """Stop the host, the simulator and Azurite."""
        if self.host is not None and self.host.poll() is None:
            self.host.terminate()
            try:
                self.host.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.host.kill()
                self.host.wait()
        if self.simulator is not None:
            self.simulator.stop()
        if self.azurite is not None:
            self.azurite.stop()

    def token(
        self, tenant_id: str, user_id: str, *, roles: tuple[str, ...] = (), upn: str = ""
    ) -> str:
        """Issue an API bearer token for a user, as Entra ID would."""
        return self.sim.issue_api_token(tenant_id, user_id, roles=roles, upn=upn or None)

    def call(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        """Call the product's API."""
        headers = dict(kwargs.pop("headers", {}) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(
            method, f"{self.api_url}/{path.lstrip('/')}", headers=headers, timeout=60, **kwargs
        )

    def connect_mail(self, token: str, *, decision: str = "accept") -> requests.Response:
        """Run the whole consent flow as the token's user would; return the callback's answer."""
        return self.connect(token, "mail", decision=decision)

    def connect_calendar(self, token: str, *, decision: str = "accept") -> requests.Response:
        """Run the calendar consent flow as the token's user would; return the callback's answer."""
        return self.connect(token, "calendar", decision=decision)

    def connect(self, token: str, kind: str, *, decision: str = "accept") -> requests.Response:
        """Run the consent flow of one kind of connection; return the callback's answer."""
        started = self.call("POST", f"me/connections/{kind}", token)
        started.raise_for_status()
        url = started.json()["authorizeUrl"]
        location = drive_consent(url, decision=decision, verify=str(self._tls().ca_pem))
        return requests.get(location, timeout=60)

    def run_function(self, name: str, payload: str = "") -> None:
        """Run a non-HTTP function now through the host's admin API."""
        response = requests.post(
            f"{self.admin_url}/functions/{name}", json={"input": payload}, timeout=30
        )
        response.raise_for_status()

    def wait_idle(
        self, *, timeout_s: float = 300.0, queues: tuple[str, ...] = (MAIL_QUEUE,)
    ) -> float:
        """Wait until the queues are empty and no invocation runs; return the seconds waited."""
        connection = self._azurite().connection_string
        clients = [QueueClient.from_connection_string(connection, q) for q in queues]
        started = time.monotonic()
        quiet = 0
        while time.monotonic() - started < timeout_s:
            status = requests.get(f"{self.admin_url}/host/status", timeout=10).json()
            pending = sum(_queue_length(client) for client in clients)
            quiet = quiet + 1 if pending == 0 and status.get("inflight", 0) == 0 else 0
            if quiet >= 3:
                return time.monotonic() - started
            time.sleep(0.1)
        message = f"queues {queues} did not drain within {timeout_s} s"
        raise TimeoutError(message)


def _queue_length(client: Any) -> int:
    try:
        return int(client.get_queue_properties().approximate_message_count or 0)
    except Exception:  # noqa: BLE001 - a queue not created yet holds nothing
        return 0
