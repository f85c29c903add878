"""Log formatting for the host process: a constant event phrase followed by ``key=value`` pairs."""

from __future__ import annotations

import logging

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class KeyValueFormatter(logging.Formatter):
    """Render ``extra`` keys after the message, so structured fields reach the console."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` and append its extra keys in the order they were given."""
        text = super().format(record)
        pairs = [f"{key}={value}" for key, value in vars(record).items() if key not in _STANDARD]
        if not pairs:
            return text
        head, newline, tail = text.partition("\n")
        return f"{head} {' '.join(pairs)}{newline}{tail}"


def configure_logging(level: str) -> None:
    """Send all logs to stderr at ``level``; the dev server's request lines only when debugging.

    Raises:
        ValueError: ``level`` is not a logging level name.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        message = f"HOST_LOG_LEVEL must be a logging level such as INFO or DEBUG, got {level!r}"
        raise ValueError(message)
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter())
    logging.basicConfig(level=numeric, handlers=[handler], force=True)
    # Request lines carry full URLs, query strings included; keep them out of normal logs.
    logging.getLogger("werkzeug").setLevel(max(numeric, logging.WARNING))
    logging.getLogger("azure").setLevel(max(numeric, logging.WARNING))
