"""Logging setup: text or one JSON object per line. Callers never log secret values."""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDKs log every request's URL and headers at INFO (multi-line, unstructured); our own
    # log lines already name each request that matters, so theirs stay at WARNING.
    for noisy in ("azure", "urllib3", "msal"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_unexpected(logger: logging.Logger, what: str, error: BaseException) -> None:
    """Log a bug: the exception type and stack, not its text, which could quote a request's
    values (options, secrets)."""
    stack = "".join(traceback.format_tb(error.__traceback__))
    logger.error("%s: unexpected %s\n%s", what, type(error).__name__, stack)
