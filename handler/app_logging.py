"""One JSON object per log line on stdout, so CloudWatch Logs Insights can filter on fields.

The handler's logger does not propagate to the root logger: the Lambda runtime installs its own
text formatter there, which would wrap our JSON in a tab-separated prefix.
"""

from __future__ import annotations

import json
import logging
import sys
import time

LOGGER_NAME = "access_times"
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    """Render a record as a single JSON line; ``extra={...}`` keys become top-level fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at emit time (the runtime or a test may swap it)."""

    is_access_times_json = True  # marker that survives re-imports, unlike isinstance()

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def get_logger(level: str) -> logging.Logger:
    """The handler logger, configured idempotently (modules may be re-imported in tests)."""
    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if getattr(h, "is_access_times_json", False)]:
        logger.removeHandler(old)
    handler = _StdoutHandler()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger
