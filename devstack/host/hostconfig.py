"""Read host.json, local.settings.json and ``%NAME%`` binding expressions as the real host does.

Only the settings the product relies on are read: ``extensions.http.routePrefix``, the
``extensions.queues`` block and ``functionTimeout``. Every problem found in host.json is reported
in one :class:`HostConfigError`, so a broken file is fixed in one pass.

Known limitations: ``functionTimeout`` defaults to 30 minutes (the Flex Consumption default)
when host.json does not set it; other host.json sections (logging, retry, singleton, extension
bundle) are read by nobody and have no effect locally.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devstack.host.errors import HostConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping
    from pathlib import Path

DEFAULT_ROUTE_PREFIX = "api"
DEFAULT_BATCH_SIZE = 16
MAX_BATCH_SIZE = 32
DEFAULT_MAX_DEQUEUE_COUNT = 5
# The real host polls every 2 s at most when it runs locally, 1 minute in Azure.
DEFAULT_MAX_POLLING_INTERVAL_S = 2.0
MIN_POLLING_INTERVAL_S = 0.1
DEFAULT_FUNCTION_TIMEOUT_S = 30 * 60.0
MESSAGE_ENCODINGS = ("base64", "none")

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$")
_EXPRESSION = re.compile(r"%([^%]+)%")


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """The ``extensions.queues`` settings that drive every queue poller."""

    batch_size: int = DEFAULT_BATCH_SIZE
    new_batch_threshold: int = DEFAULT_BATCH_SIZE // 2
    visibility_timeout_s: float = 0.0
    max_dequeue_count: int = DEFAULT_MAX_DEQUEUE_COUNT
    max_polling_interval_s: float = DEFAULT_MAX_POLLING_INTERVAL_S
    message_encoding: str = "base64"

    @property
    def max_concurrency(self) -> int:
        """How many messages one function may process at once: a batch plus the threshold."""
        return self.batch_size + self.new_batch_threshold


@dataclass(frozen=True, slots=True)
class HostConfig:
    """The parts of host.json the local host honours."""

    route_prefix: str = DEFAULT_ROUTE_PREFIX
    queues: QueueOptions = QueueOptions()
    function_timeout_s: float | None = DEFAULT_FUNCTION_TIMEOUT_S

    @classmethod
    def from_file(cls, path: Path) -> HostConfig:
        """Parse ``path``, or return the defaults when the file does not exist.

        Raises:
            HostConfigError: The file is not JSON or holds values the real host would reject.
        """
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as error:
            message = f"{path} is not valid JSON: {error}"
            raise HostConfigError(message) from error
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "host.json") -> HostConfig:
        """Build the configuration from a parsed host.json document.

        Raises:
            HostConfigError: One or more values are out of range; all of them are listed.
        """
        problems: list[str] = []
        extensions = data.get("extensions") or {}
        http = extensions.get("http") or {}
        prefix = str(http.get("routePrefix", DEFAULT_ROUTE_PREFIX)).strip("/")
        queues = _queue_options(extensions.get("queues") or {}, problems)
        timeout = _function_timeout(data.get("functionTimeout"), problems)

        if problems:
            message = f"{source} has invalid settings: " + "; ".join(problems)
            raise HostConfigError(message)
        return cls(route_prefix=prefix, queues=queues, function_timeout_s=timeout)


def _queue_options(raw: Mapping[str, Any], problems: list[str]) -> QueueOptions:
    batch_size = _int_setting(
        raw, "batchSize", DEFAULT_BATCH_SIZE, problems, minimum=1, maximum=MAX_BATCH_SIZE
    )
    threshold = _int_setting(raw, "newBatchThreshold", batch_size // 2, problems, minimum=0)
    dequeue = _int_setting(raw, "maxDequeueCount", DEFAULT_MAX_DEQUEUE_COUNT, problems, minimum=1)
    visibility = _timespan_setting(raw, "visibilityTimeout", 0.0, problems)
    polling = _timespan_setting(raw, "maxPollingInterval", DEFAULT_MAX_POLLING_INTERVAL_S, problems)
    if polling < MIN_POLLING_INTERVAL_S:
        problems.append(
            f"extensions.queues.maxPollingInterval must be at least 00:00:00.100, "
            f"got {raw.get('maxPollingInterval')!r}"
        )
    encoding = str(raw.get("messageEncoding", "base64")).lower()
    if encoding not in MESSAGE_ENCODINGS:
        problems.append(
            f"extensions.queues.messageEncoding must be one of {MESSAGE_ENCODINGS}, "
            f"got {raw.get('messageEncoding')!r}"
        )
    return QueueOptions(
        batch_size=batch_size,
        new_batch_threshold=threshold,
        visibility_timeout_s=visibility,
        max_dequeue_count=dequeue,
        max_polling_interval_s=polling,
        message_encoding=encoding,
    )


def _int_setting(
    raw: Mapping[str, Any],
    key: str,
    default: int,
    problems: list[str],
    *,
    minimum: int,
    maximum: int | None = None,
) -> int:
    value = raw.get(key, default)
    in_range = isinstance(value, int) and value >= minimum and (maximum is None or value <= maximum)
    if isinstance(value, bool) or not in_range:
        upper = f" and at most {maximum}" if maximum is not None else ""
        problems.append(
            f"extensions.queues.{key} must be an integer of at least {minimum}{upper}, "
            f"got {value!r}"
        )
        return default
    return int(value)


def _timespan_setting(
    raw: Mapping[str, Any], key: str, default: float, problems: list[str]
) -> float:
    if key not in raw:
        return default
    try:
        return parse_timespan(str(raw[key]))
    except ValueError:
        problems.append(
            f"extensions.queues.{key} must be a [d.]hh:mm:ss[.fff] timespan, got {raw[key]!r}"
        )
        return default


def _function_timeout(raw: object, problems: list[str]) -> float | None:
    if raw is None:
        return DEFAULT_FUNCTION_TIMEOUT_S
    if str(raw) == "-1":
        return None
    try:
        return parse_timespan(str(raw))
    except ValueError:
        problems.append(f"functionTimeout must be a hh:mm:ss timespan or -1, got {raw!r}")
        return DEFAULT_FUNCTION_TIMEOUT_S


def parse_timespan(text: str) -> float:
    """Convert a .NET ``[d.]hh:mm:ss[.fffffff]`` timespan into seconds.

    Raises:
        ValueError: ``text`` is not in that format or a part is out of range.
    """
    match = _TIMESPAN.match(text.strip())
    if match is None:
        message = f"timespan must look like [d.]hh:mm:ss[.fff], got {text!r}"
        raise ValueError(message)
    days, hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds) > 59:
        message = f"timespan has an hour, minute or second out of range: {text!r}"
        raise ValueError(message)
    whole = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return whole + (float(f"0.{fraction}") if fraction else 0.0)


def load_local_settings(path: Path, environ: MutableMapping[str, str]) -> list[str]:
    """Copy ``Values`` from local.settings.json into ``environ`` without overriding set names.

    Returns:
        The names that were copied, so the caller can log how many came from the file.

    Raises:
        HostConfigError: The file exists but is not JSON, or its values are encrypted.
    """
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        message = f"{path} is not valid JSON: {error}"
        raise HostConfigError(message) from error
    if data.get("IsEncrypted"):
        message = f"{path} is encrypted; decrypt it first (IsEncrypted must be false)"
        raise HostConfigError(message)

    copied = []
    for name, value in (data.get("Values") or {}).items():
        if name not in environ:
            environ[name] = "" if value is None else str(value)
            copied.append(name)
    return copied


def resolve_expression(value: str, settings: Mapping[str, str], *, where: str) -> str:
    """Replace every ``%NAME%`` in a binding value with the app setting ``NAME``.

    Raises:
        HostConfigError: A referenced setting is not defined; ``where`` names the binding.
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings:
            message = f"{where} refers to app setting %{name}%, which is not defined"
            raise HostConfigError(message)
        return settings[name]

    return _EXPRESSION.sub(substitute, value)
