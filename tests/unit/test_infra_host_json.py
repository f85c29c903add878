"""host.json works for both hosts: the local one in devstack/ and Flex Consumption on Azure."""

from __future__ import annotations

import json

from devstack.host.hostconfig import HostConfig
from tests.unit.infra import ROOT

HOST_JSON = ROOT / "host.json"


def test_host_json_queue_settings_match_the_producers():
    """The local host reads host.json, and triggers expect the base64 text JobQueue sends."""
    # GIVEN / WHEN the local host reads host.json (it raises on a value the real host refuses)
    config = HostConfig.from_file(HOST_JSON)

    # THEN queue messages are base64, as shared/adapters/queues.py encodes them
    assert config.queues.message_encoding == "base64"
    assert config.function_timeout_s is not None


def test_host_json_extension_bundle_runs_on_flex_consumption():
    """The extension bundle is the Functions one from version 4 on, as Flex Consumption needs."""
    # GIVEN host.json
    bundle = json.loads(HOST_JSON.read_text(encoding="utf-8"))["extensionBundle"]

    # WHEN / THEN its bundle range starts at 4 or later
    assert bundle["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    low = bundle["version"].lstrip("[(").split(",")[0].split(".")[0]
    assert int(low) >= 4, f"host.json extensionBundle.version must start at 4, not {low}"
