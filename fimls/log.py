"""Logging to stderr or a file, with secrets redacted from every record."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

_PATTERNS = re.compile(
    r"(Bearer\s+)[^\s'\"]+"
    r"|(['\"]api_?[kK]ey['\"]\s*:\s*['\"])[^'\"]*"
    r"|\bsk-[A-Za-z0-9_-]{8,}"
)


class RedactingFilter(logging.Filter):
    """Replaces API keys (the configured ones and anything key-shaped) with ``***``."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def redact(self, text: str) -> str:
        """``text`` with every secret masked."""
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return _PATTERNS.sub(lambda m: (m.group(1) or m.group(2) or "") + "***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = self.redact(message)
        record.args = None
        return True


REDACTOR = RedactingFilter()


def add_secrets(secrets: Iterable[str | None]) -> None:
    """Register values that must never be logged."""
    REDACTOR.secrets.update(s for s in secrets if s)


def setup(verbosity: int = 0, log_file: str | None = None) -> None:
    """Log to ``log_file`` or stderr (never stdout): -v info, -vv debug, -vvv pygls's message trace."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler: logging.Handler
    if log_file:
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(REDACTOR)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[handler],
        force=True,
    )
    quiet = logging.DEBUG if verbosity >= 3 else logging.WARNING
    for name in ("httpx", "httpcore", "hpack", "pygls"):
        logging.getLogger(name).setLevel(max(level, quiet))
