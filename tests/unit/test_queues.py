"""Unit tests for shared.adapters.queues (BR-14: one message encoding on both sides)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.adapters.queues import (
    MAIL_SYNC_QUEUE,
    MAX_MESSAGE_BYTES,
    JobQueue,
    decode_job,
    encode_job,
)
from shared.errors import InvalidJobError
from shared.sync.mail import MailJob

QUEUE_MESSAGE_LIMIT = 64 * 1024
"""What Storage Queues accept per message, in characters of the (base64) message text."""

JOBS = [
    MailJob("72f988bf-86f1-41af-91ab-2d7cd011db47", "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"),
    MailJob("abcd", "u123"),
    MailJob("msg2", "QUJD"),
    MailJob("tenant/with+base64=chars", 'user"quote\\slash'),
    MailJob("mandant-ü", "utilisateur-😀"),
    MailJob("", ""),
]
JOB_IDS = ["guids", "base64-ids", "br14-msg2", "json-escapes", "non-ascii", "empty"]
REFUSED_BY_WORKER = {"json-escapes", "non-ascii", "empty"}
"""Ids that are not Entra ids: they survive the queue intact, then the worker refuses them."""


def host_decode(wire: str) -> bytes:
    """Decode message text as the Functions queue trigger does with base64 encoding."""
    return base64.b64decode(wire, validate=True)


@dataclass
class FakeQueueClient:
    """QueueClient stand-in: applies the encode policy it was built with, as the SDK does."""

    encode_policy: Any
    wire: list[tuple[str, int | None]] = field(default_factory=list)

    def send_message(self, content: str, visibility_timeout: int | None = None) -> None:
        self.wire.append((self.encode_policy(content), visibility_timeout))


@dataclass
class FakeQueueService:
    """QueueServiceClient stand-in that hands out one recording client per queue."""

    clients: dict[str, FakeQueueClient] = field(default_factory=dict)

    def get_queue_client(self, queue: str, **options: Any) -> FakeQueueClient:
        assert isinstance(options["message_encode_policy"], TextBase64EncodePolicy)
        assert isinstance(options["message_decode_policy"], TextBase64DecodePolicy)
        return self.clients.setdefault(queue, FakeQueueClient(options["message_encode_policy"]))


@pytest.mark.parametrize("job", JOBS, ids=JOB_IDS)
def test_encode_job_round_trips_through_sdk_policy_and_host_rule(job):
    """Every job shape survives SDK encoding and the host's decode byte for byte."""
    # GIVEN a job as the product sends it
    message = job.as_message()

    # WHEN it is encoded, put on the wire by the SDK's policy and decoded by the host rule
    text = encode_job(message)
    wire = TextBase64EncodePolicy()(text)
    body = host_decode(wire)

    # THEN the host gets the exact bytes, and the worker reads the same job back (or refuses
    # ids that are not Entra ids, by name, rather than syncing a garbled one)
    assert body == text.encode("utf-8")
    assert decode_job(body) == message
    if JOB_IDS[JOBS.index(job)] in REFUSED_BY_WORKER:
        with pytest.raises(InvalidJobError):
            MailJob.parse(decode_job(body))
    else:
        assert MailJob.parse(decode_job(body)) == job


@pytest.mark.parametrize("job", JOBS, ids=JOB_IDS)
def test_encode_job_round_trips_through_sdk_decode_policy(job):
    """The SDK's own base64 text decoder gives back the text the producer encoded."""
    # GIVEN a job on the wire
    text = encode_job(job.as_message())
    wire = TextBase64EncodePolicy()(text)

    # WHEN the SDK's decode policy reads it
    decoded = TextBase64DecodePolicy().decode(wire, None)

    # THEN it is the producer's text
    assert decoded == text


def test_job_queue_sends_base64_the_host_can_decode():
    """JobQueue.send and send_many put base64 text on the wire, not plain JSON (BR-14)."""
    # GIVEN a job queue over a recording queue service
    service = FakeQueueService()
    queue = JobQueue(service, max_workers=2)  # type: ignore[arg-type]
    jobs = [job.as_message() for job in JOBS]

    # WHEN one job is sent with a delay and the rest in bulk
    queue.send(MAIL_SYNC_QUEUE, jobs[0], delay_s=30)
    sent = queue.send_many(MAIL_SYNC_QUEUE, jobs[1:])

    # THEN every wire text decodes, by the host rule, to the job; the delay is kept
    wire = service.clients[MAIL_SYNC_QUEUE].wire
    assert sent == len(jobs) - 1
    assert wire[0][1] == 30
    received = [decode_job(host_decode(text)) for text, _ in wire]
    assert sorted(received, key=json.dumps) == sorted(jobs, key=json.dumps)


def test_encode_job_is_compact_and_key_sorted():
    """Equal jobs encode to identical text whatever their key order."""
    # GIVEN one job with its keys in two orders
    first = {"user": "u", "kind": "mail", "tenant": "t"}
    second = {"kind": "mail", "tenant": "t", "user": "u"}

    # WHEN both are encoded
    texts = encode_job(first), encode_job(second)

    # THEN the texts are equal and compact
    assert texts[0] == texts[1] == '{"kind":"mail","tenant":"t","user":"u"}'


def test_encode_job_at_limit_fits_queue_message_after_base64():
    """A job of exactly the raw limit still fits one queue message once base64-encoded."""
    # GIVEN a job whose JSON text is exactly the raw limit
    overhead = len(encode_job({"kind": "mail", "pad": ""}))
    job = {"kind": "mail", "pad": "x" * (MAX_MESSAGE_BYTES - overhead)}

    # WHEN it is encoded for the wire
    wire = TextBase64EncodePolicy()(encode_job(job))

    # THEN the wire text is within the queue's message limit
    assert len(wire) <= QUEUE_MESSAGE_LIMIT


@pytest.mark.parametrize("pad", ["x" * MAX_MESSAGE_BYTES, "é" * (MAX_MESSAGE_BYTES // 6 + 1)])
def test_encode_job_refuses_oversize_job(pad):
    """A job over the raw limit, counted after JSON escaping, raises InvalidJobError."""
    # GIVEN a job just over the limit once serialised
    job = {"kind": "mail", "pad": pad}

    # WHEN it is encoded THEN it is refused, naming its kind
    with pytest.raises(InvalidJobError, match="'mail'"):
        encode_job(job)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe\x00",
        "{broken",
        b"",
        base64.b64decode("abcd"),
        '{"kind": "mail-sync", "n": 1' + "0" * 5000 + "}",
        "[" * 100_000 + "]" * 100_000,
    ],
    ids=["text", "not-utf8", "truncated", "empty", "br14-decoded-garbage", "huge-int", "deep"],
)
def test_decode_job_refuses_non_json(body):
    """A body that is not UTF-8 JSON raises InvalidJobError so it goes to poison."""
    # GIVEN a body the producer never wrote

    # WHEN it is decoded THEN it is refused
    with pytest.raises(InvalidJobError, match="not UTF-8 JSON"):
        decode_job(body)


@pytest.mark.parametrize("body", [b"[1, 2]", b'"mail"', b"null", b"42", "true"])
def test_decode_job_refuses_non_object(body):
    """Valid JSON that is not an object raises InvalidJobError."""
    # GIVEN a JSON value that is not an object

    # WHEN it is decoded THEN it is refused
    with pytest.raises(InvalidJobError, match="not a JSON object"):
        decode_job(body)
