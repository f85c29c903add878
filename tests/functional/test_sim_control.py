"""Functional tests of the simulator's /_sim control API, .eml loading and standalone entry."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from devstack.simulator import Simulator
from devstack.tls import create_tls_material

ROOT = Path(__file__).resolve().parents[2]
EML = (
    b"Message-ID: <eml-1@example.test>\r\n"
    b"From: Sender <sender@example.test>\r\n"
    b"To: User <user@contoso.test>\r\n"
    b"Subject: Loaded from eml\r\n"
    b"Date: Tue, 05 Mar 2024 10:00:00 +0000\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Body text.\r\n"
)


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return create_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def sim(tls):
    simulator = Simulator(tls, api_audience="api://outlook-sync-tests")
    simulator.start()
    yield simulator
    simulator.stop()


def test_control_creates_user_app_and_messages(sim, tls):
    """POST /_sim/users, /_sim/apps and /_sim/mailboxes/{upn}/messages set up a mailbox."""
    # GIVEN a tenant and a user name
    ca = str(tls.ca_pem)
    tenant_id = str(uuid.uuid4())
    upn = f"ctl-{uuid.uuid4().hex[:6]}@contoso.test"

    # WHEN a user, an app and two messages are created over HTTP
    user = requests.post(
        f"{sim.base_url}/_sim/users", json={"tenant_id": tenant_id, "upn": upn}, verify=ca
    )
    app = requests.post(
        f"{sim.base_url}/_sim/apps",
        json={"client_id": "c1", "client_secret": "s", "redirect_uris": ["https://a/cb"]},
        verify=ca,
    )
    messages = requests.post(
        f"{sim.base_url}/_sim/mailboxes/{upn}/messages",
        json={"folder": "sentitems", "messages": [{"subject": "a"}, {"subject": "b"}]},
        verify=ca,
    )

    # THEN everything exists in the simulator
    assert user.status_code == 201
    assert user.json()["tenant_id"] == tenant_id
    assert app.status_code == 201
    assert messages.status_code == 201
    assert [m["subject"] for m in sim.messages(upn, "Sent Items")] == ["a", "b"]
    assert [m["id"] for m in sim.messages(upn, "sentitems")] == messages.json()["ids"]


def test_control_bad_request_is_400(sim, tls):
    """A control call missing a required field gets 400."""
    # GIVEN / WHEN a user without a tenant
    response = requests.post(
        f"{sim.base_url}/_sim/users", json={"upn": "x@y"}, verify=str(tls.ca_pem)
    )

    # THEN it is refused
    assert response.status_code == 400


def test_load_eml_adds_parsed_message(sim):
    """load_eml parses raw RFC 5322 bytes with devstack.mailload and stores the message."""
    # GIVEN the mail loader and a user
    pytest.importorskip("devstack.mailload")
    upn = f"eml-{uuid.uuid4().hex[:6]}@contoso.test"
    sim.add_user(str(uuid.uuid4()), upn)

    # WHEN an .eml is loaded
    message_id = sim.load_eml(upn, "inbox", EML)

    # THEN it is in the inbox with its Internet message id
    stored = sim.messages(upn, "inbox")
    assert [m["id"] for m in stored] == [message_id]
    assert stored[0]["internetMessageId"] == "<eml-1@example.test>"


def test_module_entry_prints_urls_as_json(tmp_path):
    """python -m devstack.simulator prints its URLs on one JSON line and serves them."""
    # GIVEN the standalone entry point
    command = [sys.executable, "-m", "devstack.simulator", "--state-dir", str(tmp_path)]

    # WHEN it starts
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        urls = json.loads(process.stdout.readline())
        config = requests.get(
            f"{urls['base_url']}/common/v2.0/.well-known/openid-configuration",
            verify=urls["ca_pem"],
            timeout=10,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)

    # THEN the URLs work
    assert urls["graph_url"] == f"{urls['base_url']}/graph/v1.0"
    assert urls["vault_url"].startswith("https://127.0.0.1:")
    assert config.status_code == 200
