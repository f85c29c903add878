"""Poll a storage queue for one queue-triggered function, the way the real host does.

The poller receives up to ``batchSize`` messages at a time and hides them for 10 minutes while
they run, fetching again once no more than ``newBatchThreshold`` are still running, so at most
``batchSize + newBatchThreshold`` run at once. A message body is decoded per ``messageEncoding``:
with ``base64`` (the default) a body that is not valid base64 counts as a failed attempt, exactly
as in Azure. Success deletes the message. A failure makes it visible again after
``visibilityTimeout``, or, on its ``maxDequeueCount``-th attempt, copies its original text to
``<queue>-poison`` and deletes it. Empty polls back off from 100 ms to ``maxPollingInterval``.

Known limitations: the 10-minute hold is not renewed, so an invocation longer than that lets the
message reappear and run a second time; the real host extends the hold while a function runs.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.functions.queue import QueueMessage as TriggerMessage
from azure.storage.queue import LinearRetry, QueueClient

from devstack.host.errors import HostConfigError
from devstack.host.hostconfig import MIN_POLLING_INTERVAL_S

if TYPE_CHECKING:
    import azure.functions as func
    from azure.storage.queue import QueueMessage

    from devstack.host.hostconfig import QueueOptions
    from devstack.host.invocation import InvocationRunner
    from devstack.host.loader import QueueFunction

logger = logging.getLogger(__name__)

# The storage default the real host uses to hide a message while its function runs.
HOLD_WHILE_RUNNING_S = 600
POISON_SUFFIX = "-poison"


def decode_body(content: str, encoding: str) -> bytes:
    """Turn a queue message's text into the bytes the function receives.

    Raises:
        binascii.Error: ``encoding`` is ``base64`` and ``content`` is not valid base64.
    """
    if encoding == "none":
        return content.encode("utf-8")
    return base64.b64decode(content, validate=True)


def trigger_message(
    message_id: str,
    body: bytes,
    *,
    dequeue_count: int | None,
    inserted: datetime | None,
    expires: datetime | None,
    next_visible: datetime | None = None,
    pop_receipt: str | None = None,
) -> func.QueueMessage:
    """Build the ``func.QueueMessage`` a queue-triggered function receives, as the worker does."""
    # azure.functions.queue.QueueMessage carries the metadata but its __init__ is untyped.
    return TriggerMessage(  # type: ignore[no-untyped-call]
        id=message_id,
        body=body,
        dequeue_count=dequeue_count,
        insertion_time=inserted,
        expiration_time=expires,
        time_next_visible=next_visible or inserted,
        pop_receipt=pop_receipt,
    )


class QueuePoller:
    """Receive, run and settle the messages of one queue-triggered function until stopped."""

    def __init__(
        self,
        function: QueueFunction,
        options: QueueOptions,
        runner: InvocationRunner,
        stop: threading.Event,
    ) -> None:
        self.function = function
        self._options = options
        self._runner = runner
        self._stop = stop
        self._client = _queue_client(function.connection_string, function.queue_name)
        self._poison = _queue_client(
            function.connection_string, function.queue_name + POISON_SUFFIX
        )
        self._poison_ready = False
        self._active = 0
        self._capacity = threading.Condition()
        self._pool = ThreadPoolExecutor(
            max_workers=options.max_concurrency, thread_name_prefix=f"queue-{function.name}"
        )
        self._thread = threading.Thread(
            target=self._loop, name=f"poller-{function.name}", daemon=True
        )

    def start(self) -> None:
        """Create the queue if it is missing and start polling.

        Raises:
            HostConfigError: The storage account named by the connection cannot be reached.
        """
        try:
            _create_queue(self._client)
        except AzureError as error:
            message = (
                f"queue function {self.function.name!r} cannot create or reach queue "
                f"{self.function.queue_name!r} through setting {self.function.connection!r}: "
                f"{type(error).__name__}"
            )
            raise HostConfigError(message) from error
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        """Wait for the polling thread to end, then release the worker threads."""
        # Wake a poller that waits for capacity so it sees the stop request.
        with self._capacity:
            self._capacity.notify_all()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def invoke_now(self, body: bytes) -> None:
        """Run the function once with ``body`` as the message, outside the queue (admin)."""
        now = datetime.now(UTC)
        message = trigger_message(
            str(uuid.uuid4()), body, dequeue_count=1, inserted=now, expires=now + timedelta(days=7)
        )
        self._pool.submit(
            self._runner.invoke, self.function, message, trigger="queue", source="admin"
        )

    def _loop(self) -> None:
        delay = MIN_POLLING_INTERVAL_S
        while not self._stop.is_set():
            self._wait_for_capacity()
            messages = self._receive()
            if messages:
                delay = MIN_POLLING_INTERVAL_S
                for message in messages:
                    self._pool.submit(self._process, message)
                continue
            self._stop.wait(delay)
            delay = min(delay * 2, self._options.max_polling_interval_s)

    def _wait_for_capacity(self) -> None:
        with self._capacity:
            self._capacity.wait_for(
                lambda: self._active <= self._options.new_batch_threshold or self._stop.is_set()
            )

    def _receive(self) -> list[QueueMessage]:
        if self._stop.is_set():
            return []
        size = self._options.batch_size
        try:
            pages = self._client.receive_messages(
                messages_per_page=size, max_messages=size, visibility_timeout=HOLD_WHILE_RUNNING_S
            )
            messages = list(pages)
        except AzureError as error:
            logger.warning(
                "queue receive failed; retrying after the polling interval",
                extra={"queue": self.function.queue_name, "error_type": type(error).__name__},
            )
            return []
        with self._capacity:
            self._active += len(messages)
        return messages

    def _process(self, message: QueueMessage) -> None:
        try:
            succeeded = self._run(message)
            self._settle(message, succeeded=succeeded)
        except AzureError as error:
            logger.warning(
                "settling a queue message failed; it reappears when its hold expires",
                extra={"message_id": message.id, "error_type": type(error).__name__},
            )
        finally:
            with self._capacity:
                self._active -= 1
                self._capacity.notify_all()

    def _run(self, message: QueueMessage) -> bool:
        keys = {"message_id": message.id, "dequeue_count": message.dequeue_count}
        try:
            body = decode_body(message.content, self._options.message_encoding)
        except (binascii.Error, ValueError):
            logger.warning(
                "message body is not valid base64; counted as a failed attempt",
                extra={"function": self.function.name, **keys},
            )
            return False
        argument = trigger_message(
            message.id,
            body,
            dequeue_count=message.dequeue_count,
            inserted=message.inserted_on,
            expires=message.expires_on,
            next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        result = self._runner.invoke(self.function, argument, trigger="queue", **keys)
        return result.succeeded

    def _settle(self, message: QueueMessage, *, succeeded: bool) -> None:
        if succeeded:
            self._client.delete_message(message.id, message.pop_receipt)
            return
        if (message.dequeue_count or 0) >= self._options.max_dequeue_count:
            self._move_to_poison(message)
            return
        self._client.update_message(
            message.id,
            message.pop_receipt,
            visibility_timeout=round(self._options.visibility_timeout_s),
        )

    def _move_to_poison(self, message: QueueMessage) -> None:
        if not self._poison_ready:
            _create_queue(self._poison)
            self._poison_ready = True
        # The text is copied as received, so the poison message keeps the original encoding.
        self._poison.send_message(message.content)
        self._client.delete_message(message.id, message.pop_receipt)
        logger.warning(
            "message moved to the poison queue",
            extra={
                "function": self.function.name,
                "message_id": message.id,
                "dequeue_count": message.dequeue_count,
                "poison_queue": self.function.queue_name + POISON_SUFFIX,
            },
        )


def _queue_client(connection_string: str, queue_name: str) -> QueueClient:
    # The SDK still retries, but a local emulator needs seconds between tries, not the
    # 15-second-and-up defaults that make a missing Azurite look like a hung host.
    retry = LinearRetry(backoff=1, random_jitter_range=1, retry_total=3)
    return QueueClient.from_connection_string(connection_string, queue_name, retry_policy=retry)


def _create_queue(client: QueueClient) -> None:
    try:
        client.create_queue()
    except ResourceExistsError:
        return
