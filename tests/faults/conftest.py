"""The fault suite's accounting, printed in the terminal summary (so in CI's log without -s)."""

from __future__ import annotations

from tests.faults.ledger import RESULTS, Accounting


def pytest_terminal_summary(terminalreporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("fault injection: accounting per scenario")
    terminalreporter.write_line(Accounting.header())
    for result in RESULTS:
        terminalreporter.write_line(result.row())
