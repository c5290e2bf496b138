"""Running the process's event loop: the CLI's commands and the workers' supervisor share it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


def run_async(coro: Awaitable[Any], event_loop: str = "uvloop") -> Any:
    """Run on uvloop when it is installed and asked for."""
    try:
        import uvloop
    except ImportError:
        uvloop = None  # type: ignore[assignment]
    if uvloop is None or event_loop != "uvloop":
        return asyncio.run(coro)  # type: ignore[arg-type]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)  # type: ignore[arg-type]
