"""Run one invocation of a user function, log it, and count the non-HTTP ones in flight.

Every invocation gets an id, a ``context`` argument when the function asks for one, and one
summary log line with the function name, invocation id, trigger, duration and outcome.
``async def`` functions run to completion on their own event loop in the invoking thread.

Known limitations: Python cannot stop a running thread, so ``functionTimeout`` is checked when
an invocation returns: an invocation that overran it is reported as ``timed_out`` and treated as
failed (a queue message is retried), but its side effects have already happened.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import azure.functions as func
from azure.functions import _abc as azf_abc

from devstack.host.errors import FunctionTimeoutError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from devstack.host.loader import LoadedFunction

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InvocationResult:
    """How an invocation ended: its return value, or the error it raised or timed out with."""

    invocation_id: str
    value: Any
    error: BaseException | None

    @property
    def succeeded(self) -> bool:
        """Whether the function returned normally within the function timeout."""
        return self.error is None


class _TraceContext(azf_abc.TraceContext):
    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(azf_abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> azf_abc.RpcException:
        return cast("azf_abc.RpcException", None)


class InvocationContext(func.Context):
    """The ``context`` argument handed to functions that declare one."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._local = threading.local()
        self._local.invocation_id = invocation_id

    @property
    def invocation_id(self) -> str:
        """The id of this invocation, as logged by the host."""
        return self._invocation_id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        """Thread-local storage holding ``invocation_id``, as the Python worker provides."""
        # NOTE: the worker hands out an instance although the ABC annotates the class.
        return cast("type[threading.local]", self._local)

    @property
    def function_name(self) -> str:
        """The function's name."""
        return self._function_name

    @property
    def function_directory(self) -> str:
        """The directory holding function_app.py."""
        return self._function_directory

    @property
    def trace_context(self) -> azf_abc.TraceContext:
        """An empty distributed-tracing context: the local host does not trace."""
        return _TraceContext()

    @property
    def retry_context(self) -> azf_abc.RetryContext:
        """A retry context reporting no retries: retry policies are not run locally."""
        return _RetryContext()


class InvocationRunner:
    """Call user functions and keep the count of running timer and queue invocations."""

    def __init__(self, app_dir: Path, function_timeout_s: float | None) -> None:
        self._app_dir = str(app_dir)
        self._timeout_s = function_timeout_s
        self._inflight = 0
        self._idle = threading.Condition()

    @property
    def inflight(self) -> int:
        """How many timer and queue invocations are running now."""
        with self._idle:
            return self._inflight

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for running invocations to finish; say whether they did."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout=timeout_s)

    def invoke(
        self, function: LoadedFunction, trigger_value: object, *, trigger: str, **log_keys: object
    ) -> InvocationResult:
        """Run ``function`` with ``trigger_value`` bound to its trigger parameter."""
        invocation_id = str(uuid.uuid4())
        arguments: dict[str, object] = {function.arg_name: trigger_value}
        if function.wants_context:
            arguments["context"] = InvocationContext(invocation_id, function.name, self._app_dir)

        started = time.perf_counter()
        with self._counted(trigger != "http"):
            value, error = self._call(function, arguments, invocation_id)
        duration_ms = round((time.perf_counter() - started) * 1000)

        if error is None and self._timeout_s is not None and duration_ms > self._timeout_s * 1000:
            message = f"function {function.name!r} ran {duration_ms} ms, over functionTimeout"
            error = FunctionTimeoutError(message)
        extra: dict[str, object] = {
            "function": function.name,
            "invocation_id": invocation_id,
            "trigger": trigger,
        }
        status = getattr(value, "status_code", None)
        if isinstance(status, int):
            # As on Azure, a function that returns an error response still succeeded.
            extra["status"] = status
        outcome = "succeeded"
        if error is not None:
            outcome = "timed_out" if isinstance(error, FunctionTimeoutError) else "failed"
            extra["error_type"] = type(error).__name__
        logger.info(
            "invocation finished",
            extra={**extra, **log_keys, "duration_ms": duration_ms, "outcome": outcome},
        )
        return InvocationResult(invocation_id, value, error)

    @staticmethod
    def _call(
        function: LoadedFunction, arguments: dict[str, object], invocation_id: str
    ) -> tuple[Any, BaseException | None]:
        try:
            value = function.user_function(**arguments)
            if inspect.iscoroutine(value):
                value = asyncio.run(value)
        except Exception as error:
            extra = {"function": function.name, "invocation_id": invocation_id}
            logger.exception("function raised an exception", extra=extra)
            return None, error
        return value, None

    @contextmanager
    def _counted(self, counted: bool) -> Iterator[None]:
        if not counted:
            yield
            return
        with self._idle:
            self._inflight += 1
        try:
            yield
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()
