"""host.json works for both hosts: the local one in devstack/ and Flex Consumption on Azure."""

from __future__ import annotations

import json

from devstack.host.hostconfig import HostConfig
from devstack.host.queues import HOLD_WHILE_RUNNING_S
from shared.adapters.queues import (
    BATCH_SIZE,
    MAX_DEQUEUE_COUNT,
    NEW_BATCH_THRESHOLD,
    RETRY_DELAY_S,
)
from shared.sync.explain import EXPLANATIONS, times_in_words
from shared.sync.schedule import SYNC_PERIOD
from tests.unit.infra import ROOT

HOST_JSON = ROOT / "host.json"


def test_host_json_queue_settings_match_the_producers():
    """The local host reads host.json, and triggers expect the base64 text JobQueue sends."""
    # GIVEN / WHEN the local host reads host.json (it raises on a value the real host refuses)
    config = HostConfig.from_file(HOST_JSON)

    # THEN queue messages are base64, as shared/adapters/queues.py encodes them
    assert config.queues.message_encoding == "base64"
    assert config.function_timeout_s is not None


def test_host_json_queue_numbers_are_the_ones_the_product_assumes():
    """maxDequeueCount, visibilityTimeout, batchSize and newBatchThreshold match the constants."""
    # GIVEN host.json as the local host reads it, and the raw queue block (no defaults filled in)
    config = HostConfig.from_file(HOST_JSON).queues
    raw = json.loads(HOST_JSON.read_text(encoding="utf-8"))["extensions"]["queues"]

    # WHEN / THEN each number the product relies on is set explicitly and equals its constant
    assert (raw["maxDequeueCount"], config.max_dequeue_count) == (MAX_DEQUEUE_COUNT,) * 2
    assert config.visibility_timeout_s == RETRY_DELAY_S
    assert (raw["batchSize"], config.batch_size) == (BATCH_SIZE,) * 2
    assert (raw["newBatchThreshold"], config.new_batch_threshold) == (NEW_BATCH_THRESHOLD,) * 2


def test_host_json_poisoned_job_explanation_counts_the_deliveries():
    """Users are told a poisoned job failed as many times as host.json lets it be delivered."""
    # GIVEN the number of deliveries host.json allows
    deliveries = HostConfig.from_file(HOST_JSON).queues.max_dequeue_count

    # WHEN the explanation of a poisoned job is read
    summary = EXPLANATIONS["job_poisoned"].summary

    # THEN it names that number, and says the job is tried again in the next slot
    assert f"failed {times_in_words(deliveries)} in a row" in summary
    assert f"every {int(SYNC_PERIOD.total_seconds() // 60)} minutes" in summary


def test_host_json_failing_job_is_poisoned_within_one_sync_slot():
    """The retries of a failing sync job end before the next slot sends the connection's job."""
    # GIVEN host.json's deliveries and the wait between them
    queues = HostConfig.from_file(HOST_JSON).queues

    # WHEN the waits of a job that fails every delivery are added up
    waiting = (queues.max_dequeue_count - 1) * queues.visibility_timeout_s

    # THEN they fit in one sync slot, so "tried again every 10 minutes" is what happens next
    assert 0 < waiting < SYNC_PERIOD.total_seconds()


def test_host_json_function_timeout_fits_the_hold_on_a_running_message():
    """No invocation outlives the 10 minutes a message stays hidden while it runs (purge relies)."""
    # GIVEN host.json's functionTimeout
    timeout = HostConfig.from_file(HOST_JSON).function_timeout_s

    # WHEN / THEN it is set and no longer than the hold the local host, like Azure's, takes
    assert timeout is not None
    assert timeout <= HOLD_WHILE_RUNNING_S


def test_times_in_words_reads_counts():
    """Counts up to seven read as words, larger ones in digits."""
    # GIVEN / WHEN / THEN
    assert [times_in_words(n) for n in (1, 2, 5, 12)] == [
        "once",
        "twice",
        "five times",
        "12 times",
    ]


def test_host_json_extension_bundle_runs_on_flex_consumption():
    """The extension bundle is the Functions one from version 4 on, as Flex Consumption needs."""
    # GIVEN host.json
    bundle = json.loads(HOST_JSON.read_text(encoding="utf-8"))["extensionBundle"]

    # WHEN / THEN its bundle range starts at 4 or later
    assert bundle["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    low = bundle["version"].lstrip("[(").split(",")[0].split(".")[0]
    assert int(low) >= 4, f"host.json extensionBundle.version must start at 4, not {low}"
