"""Assemble and run the local Functions host: settings, functions, HTTP server, timers, queues.

Start-up follows the real host's order: app settings from local.settings.json (never overriding
variables already set in the environment), host.json, then indexing ``function_app.py``. Any
problem stops start-up with a :class:`HostConfigError` naming what is wrong, before any trigger
runs. ``stop()`` stops the timers and pollers, waits a short grace period for running
invocations, then closes the HTTP server.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from werkzeug.serving import WSGIRequestHandler, make_server

from devstack.host.hostconfig import HostConfig, load_local_settings
from devstack.host.invocation import InvocationRunner
from devstack.host.loader import (
    HttpFunction,
    QueueFunction,
    TimerFunction,
    import_app,
    load_functions,
)
from devstack.host.queues import QueuePoller
from devstack.host.server import HostApplication
from devstack.host.timers import TimerScheduler

if TYPE_CHECKING:
    from collections.abc import MutableMapping

    from werkzeug.serving import BaseWSGIServer

    from devstack.host.loader import AnyFunction

logger = logging.getLogger(__name__)


class JsonErrorRequestHandler(WSGIRequestHandler):
    """Answers in the product's JSON error shape what the HTTP server refuses by itself.

    A request line too long (414) or a malformed request (400) never reaches a function; the
    standard library's server would answer those with an HTML page.
    """

    error_content_type = "application/json"
    error_message_format = (
        '{"error": {"code": "http_%(code)d", "message": "request refused by the host"}}'
    )


class LocalHost:
    """A local Functions host for one app directory, runnable in-process or as a process."""

    def __init__(
        self,
        app_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 7071,
        environ: MutableMapping[str, str] | None = None,
        shutdown_grace_s: float = 10.0,
    ) -> None:
        self.app_dir = Path(app_dir).resolve()
        self._bind = (host, port)
        self._environ = os.environ if environ is None else environ
        self._grace_s = shutdown_grace_s
        self._stop = threading.Event()
        self._functions: list[AnyFunction] = []
        self._timers: dict[str, TimerScheduler] = {}
        self._pollers: dict[str, QueuePoller] = {}
        self._server: BaseWSGIServer | None = None
        self._server_thread: threading.Thread | None = None
        self._runner: InvocationRunner | None = None

    @property
    def port(self) -> int:
        """The port the HTTP server listens on (useful when constructed with port 0)."""
        if self._server is None:
            return self._bind[1]
        return int(self._server.server_port)

    def start(self) -> None:
        """Load the app and start serving; return once every trigger is listening.

        Raises:
            HostConfigError: Settings, host.json or a function's bindings cannot be used.
        """
        copied = load_local_settings(self.app_dir / "local.settings.json", self._environ)
        config = HostConfig.from_file(self.app_dir / "host.json")
        app = import_app(self.app_dir)
        self._functions = load_functions(app, self._environ)
        self._runner = InvocationRunner(self.app_dir, config.function_timeout_s)

        for function in self._functions:
            if isinstance(function, TimerFunction):
                self._timers[function.name] = TimerScheduler(function, self._runner, self._stop)
            elif isinstance(function, QueueFunction):
                poller = QueuePoller(function, config.queues, self._runner, self._stop)
                self._pollers[function.name] = poller
        http = [function for function in self._functions if isinstance(function, HttpFunction)]
        application = HostApplication(http, config.route_prefix, self._runner, self)
        self._server = make_server(
            *self._bind, application, threaded=True, request_handler=JsonErrorRequestHandler
        )

        try:
            for poller in self._pollers.values():
                poller.start()
        except Exception:
            self.stop()
            raise
        for timer in self._timers.values():
            timer.start()
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, name="http-server", daemon=True
        )
        self._server_thread.start()
        self._log_started(config, len(copied))

    def stop(self) -> None:
        """Stop polling and timers, let running invocations finish briefly, close the server."""
        self._stop.set()
        for poller in self._pollers.values():
            poller.join(self._grace_s)
        for timer in self._timers.values():
            timer.join(self._grace_s)
        if self._runner is not None and not self._runner.wait_idle(self._grace_s):
            logger.warning(
                "invocations still running after the shutdown grace period",
                extra={"inflight": self._runner.inflight, "grace_s": self._grace_s},
            )
        if self._server is not None:
            # shutdown() waits for serve_forever(), so call it only once serving has begun.
            if self._server_thread is not None:
                self._server.shutdown()
            self._server.server_close()
        logger.info("host stopped")

    def function_names(self) -> list[str]:
        """Return the names of all loaded functions."""
        return [function.name for function in self._functions]

    def invoke_admin(self, name: str, payload: str) -> str:
        """Start a timer or queue function on demand, as ``POST /admin/functions/{name}`` does."""
        if name in self._timers:
            self._timers[name].invoke_now()
            return "started"
        if name in self._pollers:
            self._pollers[name].invoke_now(payload.encode("utf-8"))
            return "started"
        if name in self.function_names():
            return "http"
        return "unknown"

    def _log_started(self, config: HostConfig, copied_settings: int) -> None:
        for function in self._functions:
            logger.info("function loaded", extra=_describe(function, config.route_prefix))
        logger.info(
            "host started",
            extra={
                "app_dir": str(self.app_dir),
                "port": self.port,
                "functions": len(self._functions),
                "settings_from_file": copied_settings,
            },
        )


def _describe(function: AnyFunction, route_prefix: str) -> dict[str, object]:
    if isinstance(function, HttpFunction):
        methods = ",".join(sorted(function.methods)) if function.methods else "*"
        route = "/".join(part for part in (route_prefix, function.route.template) if part)
        return {
            "function": function.name,
            "trigger": "http",
            "route": f"/{route}",
            "methods": methods,
        }
    if isinstance(function, TimerFunction):
        return {
            "function": function.name,
            "trigger": "timer",
            "schedule": function.schedule.expression,
        }
    return {"function": function.name, "trigger": "queue", "queue": function.queue_name}
