"""Storage Queue adapter: every producer in the product sends through :class:`JobQueue`.

The Functions queue trigger expects base64 message text (host.json ``messageEncoding`` is left at
its default), while the Python SDK sends plain text unless told otherwise (BR-14). Every client
made here therefore uses ``TextBase64EncodePolicy``; :func:`encode_job` and :func:`decode_job`
are the one JSON form of a job on both sides.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import (
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from shared.errors import InvalidJobError, TransientError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from azure.storage.queue import QueueClient

logger = logging.getLogger(__name__)

MAIL_SYNC_QUEUE = "mail-sync"
MAIL_SYNC_POISON_QUEUE = f"{MAIL_SYNC_QUEUE}-poison"
CALENDAR_SYNC_QUEUE = "calendar-sync"
CALENDAR_SYNC_POISON_QUEUE = f"{CALENDAR_SYNC_QUEUE}-poison"
FANOUT_QUEUE = "sync-fanout"
FANOUT_POISON_QUEUE = f"{FANOUT_QUEUE}-poison"
PURGE_QUEUE = "purge"
PURGE_POISON_QUEUE = f"{PURGE_QUEUE}-poison"
OUTBOX_QUEUE = "outbox"
OUTBOX_POISON_QUEUE = f"{OUTBOX_QUEUE}-poison"
NOTIFICATIONS_QUEUE = "notifications"
"""Notices for the customer platform to deliver to users; nothing in this product consumes it."""
QUEUES = (
    MAIL_SYNC_QUEUE,
    MAIL_SYNC_POISON_QUEUE,
    CALENDAR_SYNC_QUEUE,
    CALENDAR_SYNC_POISON_QUEUE,
    FANOUT_QUEUE,
    FANOUT_POISON_QUEUE,
    PURGE_QUEUE,
    PURGE_POISON_QUEUE,
    OUTBOX_QUEUE,
    OUTBOX_POISON_QUEUE,
    NOTIFICATIONS_QUEUE,
)
"""Every queue the product produces to or triggers on; created on start-up."""

MAX_DEQUEUE_COUNT = 5
"""Deliveries of a failing job before the host moves it to ``<queue>-poison`` (host.json
``extensions.queues.maxDequeueCount``); what users are told a poisoned job went through."""
RETRY_DELAY_S = 30
"""How long a failed delivery waits before the next one (host.json ``visibilityTimeout``)."""
BATCH_SIZE = 8
"""Messages of one queue a worker receives at once (host.json ``batchSize``)."""
NEW_BATCH_THRESHOLD = 4
"""Running messages below which a worker fetches the next batch (host.json
``newBatchThreshold``): one queue's jobs run at most ``BATCH_SIZE + NEW_BATCH_THRESHOLD`` at once
per worker."""

MAX_MESSAGE_BYTES = 48 * 1024
"""Raw payload limit: 64 KiB per message after base64's 4/3 growth."""


def encode_job(job: Mapping[str, Any]) -> str:
    """Serialise a job as compact, key-sorted JSON text.

    Raises:
        InvalidJobError: when the job would not fit in one queue message.
    """
    text = json.dumps(job, separators=(",", ":"), sort_keys=True)
    if len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
        msg = f"job of kind {job.get('kind')!r} exceeds {MAX_MESSAGE_BYTES} bytes"
        raise InvalidJobError(msg)
    return text


def decode_job(body: bytes | str) -> dict[str, Any]:
    """Parse a job from a queue message body that the host has already base64-decoded.

    Raises:
        InvalidJobError: when the body is not a JSON object.
    """
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        job = json.loads(text)
    except (ValueError, RecursionError) as error:
        msg = "queue message is not UTF-8 JSON"
        raise InvalidJobError(msg) from error
    if not isinstance(job, dict):
        msg = "queue message is not a JSON object"
        raise InvalidJobError(msg)
    return job


class JobQueue:
    """Sends jobs to Storage Queues with the encoding the Functions host expects."""

    # NOTE: azure-core's requests transport pools 10 connections per client; more threads than
    # that open and discard a connection per extra request.
    def __init__(self, service: QueueServiceClient, *, max_workers: int = 8) -> None:
        self._service = service
        self._max_workers = max_workers
        self._clients: dict[str, QueueClient] = {}
        self._raw_clients: dict[str, QueueClient] = {}

    def ensure_queues(self, names: Sequence[str] = QUEUES) -> None:
        """Create the given queues when they do not exist yet."""
        for name in names:
            try:
                self._client(name).create_queue()
            except ResourceExistsError:
                continue

    def send(self, queue: str, job: Mapping[str, Any], *, delay_s: int = 0) -> None:
        """Send one job, visible after ``delay_s`` seconds."""
        text = encode_job(job)
        try:
            self._client(queue).send_message(text, visibility_timeout=delay_s or None)
        except AzureError as error:
            msg = f"sending to queue {queue} failed"
            raise TransientError(msg) from error

    def send_many(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> int:
        """Send many jobs concurrently; return how many were sent.

        Raises:
            TransientError: when any job could not be sent (every other job was still tried).
        """
        failed = self.send_each(queue, jobs)
        if failed:
            msg = f"sending to queue {queue} failed for {len(failed)} of {len(jobs)} jobs"
            raise TransientError(msg)
        return len(jobs)

    def send_each(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> list[int]:
        """Send every job concurrently, going on past failures; return the failed positions.

        Raises:
            InvalidJobError: before anything is sent, when a job would not fit in a message.
        """
        texts = [encode_job(job) for job in jobs]
        if not texts:
            return []
        client = self._client(queue)
        workers = min(self._max_workers, len(texts))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="send") as pool:
            sent = list(pool.map(lambda text: _try_send(client, text), texts))
        return [position for position, ok in enumerate(sent) if not ok]

    def receive_raw(self, queue: str, *, max_messages: int, hold_s: int) -> list[RawMessage]:
        """Receive up to ``max_messages`` undecoded, each hidden for ``hold_s`` unless deleted.

        Raises:
            TransientError: when the queue cannot be read.
        """
        client = self._raw_clients.get(queue)
        if client is None:
            client = self._raw_clients[queue] = self._service.get_queue_client(queue)
        try:
            received = client.receive_messages(
                messages_per_page=max_messages, visibility_timeout=hold_s, max_messages=max_messages
            )
            return [RawMessage(m.id, m.pop_receipt or "", str(m.content or "")) for m in received]
        except ResourceNotFoundError:
            # The host creates a poison queue when it first moves a message there.
            return []
        except AzureError as error:
            msg = f"receiving from queue {queue} failed"
            raise TransientError(msg) from error

    def delete(self, queue: str, message: RawMessage) -> None:
        """Delete a received message; one already gone counts as deleted.

        Raises:
            TransientError: when the queue cannot be written.
        """
        try:
            self._service.get_queue_client(queue).delete_message(
                message.message_id, message.pop_receipt
            )
        except ResourceNotFoundError:
            return
        except AzureError as error:
            msg = f"deleting a message from queue {queue} failed"
            raise TransientError(msg) from error

    def approximate_length(self, queue: str) -> int:
        """Return the queue's approximate message count."""
        properties = self._client(queue).get_queue_properties()
        return int(properties.approximate_message_count or 0)

    def _client(self, queue: str) -> QueueClient:
        client = self._clients.get(queue)
        if client is None:
            client = self._service.get_queue_client(
                queue,
                message_encode_policy=TextBase64EncodePolicy(),
                message_decode_policy=TextBase64DecodePolicy(),
            )
            self._clients[queue] = client
        return client


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A queue message's text exactly as stored, with what deleting it takes."""

    message_id: str
    pop_receipt: str
    text: str


def _try_send(client: QueueClient, text: str) -> bool:
    try:
        client.send_message(text)
    except AzureError as error:
        logger.debug("queue send failed", extra={"error_type": type(error).__name__})
        return False
    return True
