"""Running a coroutine on uvloop, where it is installed; the baseline servers' life and command line."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency everywhere but Windows
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def until_signalled() -> None:
    """Return on SIGTERM or SIGINT: a baseline server's life."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def serve_main(prog: str, description: str, serve: Callable[[str, int], Coroutine[Any, Any, None]],
               argv: Sequence[str] | None = None) -> int:
    """A baseline server's command line: --host, --port (0: any free port, printed by ``serve``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (the one printed)")
    args = parser.parse_args(argv)
    run(serve(args.host, args.port))
    return 0
