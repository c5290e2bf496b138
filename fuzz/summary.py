"""Figures of the fuzzing tests (cases run, time taken), shown in pytest's terminal summary.

pytest shows what a passing test prints only with ``-s`` or ``-rA``; a line reported here is also
printed at the end of every run, under "fuzzing: cases per run", so it reaches CI's log. The
plugin registers itself on the first report (no conftest.py needed).
"""

from __future__ import annotations

from typing import Any

LINES: list[str] = []
_NAME = "fuzz-summary"


class _Summary:
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if LINES:
            terminalreporter.section("fuzzing: cases per run")
            for line in LINES:
                terminalreporter.write_line(line)


def report(config: Any, line: str) -> None:
    """Print ``line`` now (seen with -s) and in the terminal summary of this pytest run."""
    print(line)
    LINES.append(line)
    if not config.pluginmanager.has_plugin(_NAME):
        config.pluginmanager.register(_Summary(), _NAME)
