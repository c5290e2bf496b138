"""Log records kept in memory, for fuzzers and their tests: what a run logged at or above a level
is a finding (an error nobody raised to the caller)."""

from __future__ import annotations

import logging


class Recorded(logging.Handler):
    def __init__(self, level: int = logging.ERROR) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
