"""Functional tests: the local Functions host as a real subprocess against a real Azurite.

The fixture app (tests/fixtures/hostapp) is copied to a temporary directory with a
local.settings.json, and its timer and queue functions leave JSON evidence files behind.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from devstack.azurite import Azurite, free_port

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_APP = ROOT / "tests" / "fixtures" / "hostapp"
MAX_DEQUEUE_COUNT = 3  # as set in the fixture's host.json


@dataclass
class RunningHost:
    """A host subprocess and what the tests need to reach it."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    evidence: Path
    connection_string: str
    ok_queue: str
    fail_queue: str

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def queue(self, name: str, *, encoded: bool = True) -> QueueClient:
        if not encoded:
            return QueueClient.from_connection_string(self.connection_string, name)
        return QueueClient.from_connection_string(
            self.connection_string,
            name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )

    def records(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(path.read_text()) for path in self.evidence.glob(f"{kind}-*.json")]


def wait_for(check: Callable[[], Any], *, timeout_s: float = 20.0, what: str) -> Any:
    """Poll ``check`` until it returns something truthy, failing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def copy_app(target: Path, values: dict[str, str]) -> Path:
    shutil.copytree(FIXTURE_APP, target, ignore=shutil.ignore_patterns("__pycache__"))
    settings = {"IsEncrypted": False, "Values": {"FUNCTIONS_WORKER_RUNTIME": "python", **values}}
    (target / "local.settings.json").write_text(json.dumps(settings), encoding="utf-8")
    return target


def launch(
    app_dir: Path, port: int, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "devstack.host",
        "--app-dir",
        str(app_dir),
        "--port",
        str(port),
    ]
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def host_env(azurite: Azurite, evidence: Path, **overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOSTAPP_")}
    env.update(AzureWebJobsStorage=azurite.connection_string, HOSTAPP_EVIDENCE_DIR=str(evidence))
    env.update(overrides)
    return env


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@pytest.fixture(scope="module")
def host(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    """One host for the module, with unique queue names so it shares Azurite safely."""
    workdir = tmp_path_factory.mktemp("localhost")
    evidence = workdir / "evidence"
    evidence.mkdir()
    suffix = uuid.uuid4().hex[:8]
    ok_queue, fail_queue = f"host-ok-{suffix}", f"host-fail-{suffix}"
    # The file names a different ok queue: the environment must win over local.settings.json.
    app_dir = copy_app(
        workdir / "app",
        {"HOSTAPP_TICK_SCHEDULE": "* * * * * *", "HOSTAPP_OK_QUEUE": "not-this-queue"},
    )
    env = host_env(azurite, evidence, HOSTAPP_OK_QUEUE=ok_queue, HOSTAPP_FAIL_QUEUE=fail_queue)
    port = free_port()
    log_path = workdir / "host.log"
    process = launch(app_dir, port, env, log_path)
    running = RunningHost(
        process,
        f"http://127.0.0.1:{port}",
        log_path,
        evidence,
        azurite.connection_string,
        ok_queue,
        fail_queue,
    )

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"host exited with {process.returncode}:\n{running.log()}")
        try:
            return requests.get(f"{running.base_url}/admin/host/status", timeout=1).ok
        except requests.ConnectionError:
            return False

    wait_for(ready, timeout_s=30, what="the host to answer")
    yield running
    stop(process)


# --- HTTP ---------------------------------------------------------------------------------------


def test_local_host_http_passes_route_params_query_body_and_headers(host):
    """An HTTP function receives route params, query, body and headers, and its reply is kept."""
    # GIVEN a POST to a route with an int-constrained parameter
    url = f"{host.base_url}/api/companies/c-7/emails/42?folder=inbox"

    # WHEN it is sent with a body and a header
    response = requests.post(url, data="hello body", headers={"X-Probe": "p-1"}, timeout=10)

    # THEN the function saw everything and its status, headers and mimetype come back
    assert response.status_code == 201
    assert response.headers["X-Echo"] == "yes"
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "method": "POST",
        "route_params": {"company_id": "c-7", "email_id": "42"},
        "params": {"folder": "inbox"},
        "body": "hello body",
        "header": "p-1",
    }


def test_local_host_http_optional_route_parameter(host):
    """An optional route parameter may be given or left out; text replies carry a charset."""
    # GIVEN / WHEN the route is called with and without the parameter
    bare = requests.get(f"{host.base_url}/api/hello", timeout=10)
    named = requests.get(f"{host.base_url}/api/hello/ada", timeout=10)

    # THEN both reach the function
    assert (bare.status_code, bare.text) == (200, "hello world")
    assert (named.status_code, named.text) == (200, "hello ada")
    assert named.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_local_host_http_unknown_route_is_404_json(host):
    """A path no route matches, or one failing a constraint, gets a 404 JSON body."""
    # GIVEN / WHEN an unknown path and a constraint-violating path are requested
    unknown = requests.get(f"{host.base_url}/api/nowhere", timeout=10)
    not_int = requests.get(f"{host.base_url}/api/companies/c-7/emails/abc", timeout=10)

    # THEN both are 404 with JSON
    for response in (unknown, not_int):
        assert response.status_code == 404
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "not_found"


def test_local_host_http_wrong_method_is_405(host):
    """A route that exists but not for the method gets 405 with the allowed methods."""
    # GIVEN / WHEN a DELETE hits a GET/POST route
    response = requests.delete(f"{host.base_url}/api/companies/c-7/emails/42", timeout=10)

    # THEN it is refused with Allow
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"


def test_local_host_http_exception_is_500_with_a_generic_body(host):
    """An exception in an HTTP function gives a 500 without its details; the log has the trace."""
    # GIVEN / WHEN the always-raising function is called
    response = requests.get(f"{host.base_url}/api/boom", timeout=10)

    # THEN the body is generic and the traceback is in the host log
    assert response.status_code == 500
    assert "boom" not in response.text
    invocation_id = response.json()["invocationId"]
    wait_for(lambda: "RuntimeError: boom" in host.log(), what="the traceback in the log")
    assert f"invocation_id={invocation_id}" in host.log()


# --- timers -------------------------------------------------------------------------------------


def test_local_host_timer_fires_on_its_schedule(host):
    """The every-second timer, scheduled from local.settings.json, fires repeatedly."""
    # GIVEN the running host / WHEN time passes
    start = len(host.records("tick"))

    # THEN at least two more runs are recorded
    wait_for(lambda: len(host.records("tick")) >= start + 2, what="two timer runs")
    assert all(isinstance(r["past_due"], bool) for r in host.records("tick"))


# --- queues -------------------------------------------------------------------------------------


def find_ok_record(host: RunningHost, message_id: str) -> dict[str, Any] | None:
    return next((r for r in host.records("ok") if r["id"] == message_id), None)


def queue_length(client: QueueClient) -> int:
    return client.get_queue_properties().approximate_message_count or 0


def test_local_host_queue_message_processed_and_deleted(host):
    """A base64 JSON job reaches the function byte for byte and is then deleted."""
    # GIVEN a JSON job sent the way producers must send it (TextBase64EncodePolicy)
    client = host.queue(host.ok_queue)
    job = json.dumps({"user_id": "u-1", "kind": "mail", "note": "é ✓"})

    # WHEN it is enqueued
    sent = client.send_message(job)

    # THEN the function got exactly the JSON, on the first attempt, and the queue is empty
    record = wait_for(lambda: find_ok_record(host, sent.id), what="the job to run")
    assert bytes.fromhex(record["body_hex"]).decode("utf-8") == job
    assert record["dequeue_count"] == 1
    wait_for(lambda: queue_length(client) == 0, what="the message to be deleted")


def test_local_host_queue_base64_like_id_arrives_unchanged(host):
    """A short id that is itself valid base64 ('abcd') arrives as 'abcd', not as decoded bytes."""
    # GIVEN an id-like body that is valid base64 on its own
    client = host.queue(host.ok_queue)

    # WHEN it is sent base64-encoded
    sent = client.send_message("abcd")

    # THEN the function receives exactly 'abcd'
    record = wait_for(lambda: find_ok_record(host, sent.id), what="the id message to run")
    assert bytes.fromhex(record["body_hex"]) == b"abcd"


def poison_texts(host: RunningHost, queue: str, *, encoded: bool) -> list[str]:
    client = host.queue(f"{queue}-poison", encoded=encoded)
    try:
        return [message.content for message in client.peek_messages(max_messages=32)]
    except Exception:
        return []


def test_local_host_failing_message_goes_to_poison_after_max_dequeue_count(host):
    """A message whose function always fails is tried maxDequeueCount times, then poisoned."""
    # GIVEN a message for the always-failing function
    text = json.dumps({"job": uuid.uuid4().hex})
    sent = host.queue(host.fail_queue).send_message(text)

    # WHEN the host has given up on it
    wait_for(
        lambda: text in poison_texts(host, host.fail_queue, encoded=True),
        what="the message in the poison queue",
    )

    # THEN it was attempted exactly maxDequeueCount times and the original queue is empty
    attempts = sorted(r["dequeue_count"] for r in host.records("fail") if r["id"] == sent.id)
    assert attempts == list(range(1, MAX_DEQUEUE_COUNT + 1))
    assert queue_length(host.queue(host.fail_queue)) == 0


def test_local_host_message_that_is_not_base64_goes_to_poison(host):
    """Plain text sent without an encode policy fails to decode every time and is poisoned."""
    # GIVEN JSON sent as plain text, the BR-14 mistake
    text = json.dumps({"user_id": "u-2", "kind": "mail"})
    sent = host.queue(host.ok_queue, encoded=False).send_message(text)

    # WHEN the host has given up on it
    wait_for(
        lambda: text in poison_texts(host, host.ok_queue, encoded=False),
        what="the undecodable message in the poison queue",
    )

    # THEN its original text is kept and the function never ran with it
    assert find_ok_record(host, sent.id) is None
    assert f"message_id={sent.id} dequeue_count={MAX_DEQUEUE_COUNT}" in host.log()


# --- admin --------------------------------------------------------------------------------------


def test_local_host_admin_runs_a_timer_function(host):
    """POST /admin/functions/{timer} runs it once with past_due false and answers 202."""
    # GIVEN a timer whose schedule never fires during the test
    assert host.records("yearly") == []

    # WHEN it is invoked through the admin endpoint
    response = requests.post(
        f"{host.base_url}/admin/functions/yearly", json={"input": "ignored"}, timeout=10
    )

    # THEN it ran once
    assert response.status_code == 202
    records = wait_for(lambda: host.records("yearly"), what="the admin timer run")
    assert records[0]["past_due"] is False
    assert records[0]["invocation"]


def test_local_host_admin_runs_a_queue_function_with_the_input(host):
    """POST /admin/functions/{queue} runs it with the input text as the message body."""
    # GIVEN an input text
    text = f"admin-{uuid.uuid4().hex}"

    # WHEN the queue function is invoked through the admin endpoint
    response = requests.post(
        f"{host.base_url}/admin/functions/queue_ok", json={"input": text}, timeout=10
    )

    # THEN it received that text
    assert response.status_code == 202
    wait_for(
        lambda: any(bytes.fromhex(r["body_hex"]) == text.encode() for r in host.records("ok")),
        what="the admin queue run",
    )


def test_local_host_admin_unknown_function_is_404(host):
    """An admin invocation of a function that does not exist gets 404."""
    # GIVEN / WHEN / THEN
    response = requests.post(f"{host.base_url}/admin/functions/nope", json={}, timeout=10)
    assert response.status_code == 404


def test_local_host_status_lists_functions_and_inflight(host):
    """GET /admin/host/status reports Running, every function and an in-flight count."""
    # GIVEN / WHEN the status is read
    status = requests.get(f"{host.base_url}/admin/host/status", timeout=10).json()

    # THEN it lists all seven fixture functions
    assert status["state"] == "Running"
    assert set(status["functions"]) == {
        "hello",
        "company_emails",
        "boom",
        "tick",
        "yearly",
        "queue_ok",
        "queue_fail",
    }
    assert isinstance(status["inflight"], int)


# --- lifecycle ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [("*/5 * * * *", "5 fields"), ("61 * * * * *", "out of range")],
)
def test_local_host_invalid_schedule_fails_start_up(azurite, tmp_path, schedule, reason):
    """A timer with an invalid or five-field schedule stops start-up with a message naming it."""
    # GIVEN the fixture app with a bad schedule in the environment
    app_dir = copy_app(tmp_path / "app", {})
    env = host_env(
        azurite,
        tmp_path,
        HOSTAPP_TICK_SCHEDULE=schedule,
        HOSTAPP_OK_QUEUE="host-unused-ok",
        HOSTAPP_FAIL_QUEUE="host-unused-fail",
    )

    # WHEN the host is started
    process = launch(app_dir, free_port(), env, tmp_path / "host.log")
    code = process.wait(timeout=30)

    # THEN it exits with an error naming the function and the problem
    output = (tmp_path / "host.log").read_text()
    assert code == 2
    assert "timer function 'tick' has an invalid schedule" in output
    assert reason in output


def test_local_host_sigterm_stops_cleanly(azurite, tmp_path):
    """SIGTERM stops a running host with exit status 0 after logging its shutdown."""
    # GIVEN a running host
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    app_dir = copy_app(tmp_path / "app", {"HOSTAPP_TICK_SCHEDULE": "0 0 0 1 1 *"})
    suffix = uuid.uuid4().hex[:8]
    env = host_env(
        azurite,
        evidence,
        HOSTAPP_OK_QUEUE=f"host-ok-{suffix}",
        HOSTAPP_FAIL_QUEUE=f"host-f-{suffix}",
    )
    log_path = tmp_path / "host.log"
    process = launch(app_dir, free_port(), env, log_path)
    wait_for(lambda: "host started" in log_path.read_text(), what="the host to start")

    # WHEN it receives SIGTERM
    code = stop(process)

    # THEN it exits cleanly
    assert code == 0
    assert "host stopped" in log_path.read_text()
