"""Functional tests: how the local host paces queue messages, per host.json, on a real Azurite.

The fixture app (tests/fixtures/queueapp) sets ``batchSize`` 3, ``newBatchThreshold`` 1 and
``visibilityTimeout`` 6 s. Its ``gated`` function holds each message until the test releases it,
so what runs at once is decided by the host and not by timing; its records are ordered by one
sequence counter in the host process.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from devstack.azurite import Azurite, free_port
from tests.functional.test_local_host import host_env, launch, stop, wait_for

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_APP = ROOT / "tests" / "fixtures" / "queueapp"
BATCH_SIZE, NEW_BATCH_THRESHOLD, VISIBILITY_TIMEOUT_S = 3, 1, 6  # as in the fixture's host.json
# Azurite keeps message times to the second, so a wait may come out up to a second short.
CLOCK_GRAIN_S = 1.0


@dataclass
class QueueHost:
    """A host running the queue fixture app, and where its evidence lands."""

    base_url: str
    evidence: Path
    connection_string: str
    gated_queue: str
    flaky_queue: str

    def queue(self, name: str) -> QueueClient:
        return QueueClient.from_connection_string(
            self.connection_string,
            name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )

    def records(self, kind: str) -> list[dict[str, Any]]:
        found = [json.loads(p.read_text()) for p in self.evidence.glob(f"{kind}-*.json")]
        return sorted(found, key=lambda record: record["seq"])

    def release(self, body: str) -> None:
        (self.evidence / f"release-{body}").touch()

    def visible(self, name: str) -> int:
        return len(self.queue(name).peek_messages(max_messages=32))

    def inflight(self) -> int:
        status = requests.get(f"{self.base_url}/admin/host/status", timeout=10).json()
        return int(status["inflight"])


@pytest.fixture(scope="module")
def queue_host(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueHost]:
    """One host for the module, on queues of its own."""
    workdir = tmp_path_factory.mktemp("queuehost")
    evidence = workdir / "evidence"
    evidence.mkdir()
    app_dir = workdir / "app"
    shutil.copytree(FIXTURE_APP, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    suffix = uuid.uuid4().hex[:8]
    env = host_env(
        azurite,
        evidence,
        QUEUEAPP_EVIDENCE_DIR=str(evidence),
        QUEUEAPP_GATED_QUEUE=f"gated-{suffix}",
        QUEUEAPP_FLAKY_QUEUE=f"flaky-{suffix}",
    )
    port = free_port()
    process = launch(app_dir, port, env, workdir / "host.log")
    host = QueueHost(
        f"http://127.0.0.1:{port}",
        evidence,
        azurite.connection_string,
        f"gated-{suffix}",
        f"flaky-{suffix}",
    )

    def ready() -> bool:
        if process.poll() is not None:
            log = (workdir / "host.log").read_text(errors="replace")
            pytest.fail(f"host exited with {process.returncode}:\n{log}")
        try:
            return requests.get(f"{host.base_url}/admin/host/status", timeout=1).ok
        except requests.ConnectionError:
            return False

    wait_for(ready, timeout_s=60, what="the host to answer")
    yield host
    for path in evidence.glob("start-*.json"):
        host.release(json.loads(path.read_text())["body"])
    stop(process)


def test_local_host_queue_runs_a_batch_then_refills_below_the_threshold(
    queue_host: QueueHost,
) -> None:
    """batchSize messages run first; more come only once at most newBatchThreshold still run."""
    # GIVEN ten held messages on the gated queue
    bodies = [f"held-{uuid.uuid4().hex[:8]}-{n}" for n in range(10)]
    queue = queue_host.queue(queue_host.gated_queue)
    for body in bodies:
        queue.send_message(body)

    def started(count: int) -> list[dict[str, Any]]:
        records = queue_host.records("start")
        return records if len(records) >= count else []

    # WHEN the host has started its first batch
    first = wait_for(lambda: started(BATCH_SIZE), timeout_s=60, what="the first batch")

    # THEN exactly one batch runs and the rest stay visible in the queue, untouched
    assert len(first) == BATCH_SIZE
    assert queue_host.visible(queue_host.gated_queue) == len(bodies) - BATCH_SIZE
    assert queue_host.inflight() == BATCH_SIZE

    # WHEN one of them ends, leaving more than newBatchThreshold running
    queue_host.release(first[0]["body"])
    wait_for(lambda: queue_host.inflight() == BATCH_SIZE - 1, what="the first one to end")

    # THEN nothing more is fetched
    assert len(queue_host.records("start")) == BATCH_SIZE
    assert queue_host.visible(queue_host.gated_queue) == len(bodies) - BATCH_SIZE

    # WHEN a second one ends, leaving newBatchThreshold running
    queue_host.release(first[1]["body"])

    # THEN one more batch is fetched, so batchSize + newBatchThreshold run at once
    second = wait_for(lambda: started(2 * BATCH_SIZE), timeout_s=60, what="the second batch")
    assert len(second) == 2 * BATCH_SIZE
    assert queue_host.visible(queue_host.gated_queue) == len(bodies) - 2 * BATCH_SIZE
    assert queue_host.inflight() == BATCH_SIZE + NEW_BATCH_THRESHOLD

    # WHEN everything is released as it starts
    def all_ended() -> bool:
        for record in queue_host.records("start"):
            queue_host.release(record["body"])
        return len(queue_host.records("end")) == len(bodies)

    wait_for(all_ended, timeout_s=120, what="every held message to end")

    # THEN each ran once, and never more than batchSize + newBatchThreshold ran at once
    runs = queue_host.records("start")
    assert sorted(r["body"] for r in runs) == sorted(bodies)
    assert max(r["running"] for r in runs) == BATCH_SIZE + NEW_BATCH_THRESHOLD


def test_local_host_queue_retries_a_failed_message_only_after_the_visibility_timeout(
    queue_host: QueueHost,
) -> None:
    """A failed delivery is hidden for visibilityTimeout: later messages run before its retry."""
    # GIVEN a message whose first delivery fails
    tag = uuid.uuid4().hex[:8]
    queue = queue_host.queue(queue_host.flaky_queue)
    queue.send_message(f"fail-once-{tag}")

    def attempts(body: str) -> list[dict[str, Any]]:
        return [r for r in queue_host.records("attempt") if r["body"] == body]

    failed = wait_for(lambda: attempts(f"fail-once-{tag}"), timeout_s=60, what="the first try")

    # WHEN another message is sent after that failure
    queue.send_message(f"ok-{tag}")

    # THEN the failed message is hidden meanwhile, the later one runs first, and the retry
    # comes no sooner than visibilityTimeout after the failure, as the second delivery
    retried = wait_for(
        lambda: len(attempts(f"fail-once-{tag}")) == 2 and attempts(f"fail-once-{tag}"),
        timeout_s=120,
        what="the retry",
    )
    later = attempts(f"ok-{tag}")
    assert [r["dequeue_count"] for r in retried] == [1, 2]
    assert len(later) == 1
    assert failed[0]["seq"] < later[0]["seq"] < retried[1]["seq"]
    assert retried[1]["at"] - retried[0]["at"] >= VISIBILITY_TIMEOUT_S - CLOCK_GRAIN_S
    wait_for(lambda: queue_host.visible(queue_host.flaky_queue) == 0, what="the queue to empty")
