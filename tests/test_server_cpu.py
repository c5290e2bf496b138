"""The server's CPU time over a measured window: a process tree's CPU read from /proc."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from fleetgate.simulator.processes import tree_cpu_seconds
from fleetgate.simulator.server_cpu import ServerCpu

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# A parent that starts a child; both spin until their standard input closes (bounded by 60 s).
_SPIN = "import sys, time\nend = time.monotonic() + 60\nwhile time.monotonic() < end and not sys.stdin.closed: pass"
_TREE = f"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", {_SPIN!r}], stdin=subprocess.DEVNULL)
print(child.pid, flush=True)
sys.stdin.read()
child.kill()
"""


@pytest.fixture
async def tree() -> AsyncIterator[tuple[int, int]]:
    """(parent pid, child pid): the child spins, the parent waits for its input to close."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _TREE, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None and process.stdin is not None
    child = int(await process.stdout.readline())
    try:
        yield process.pid, child
    finally:
        process.stdin.close()
        await process.wait()


async def test_a_tree_counts_its_children(tree: tuple[int, int]) -> None:
    parent, child = tree
    cpu = ServerCpu(parent, warmup=0.0, duration=0.5)
    await cpu.start()
    seconds = await cpu.seconds()  # the window's end is near: waited for
    # The spinning child is counted (the parent itself only waits on its input).
    assert seconds is not None and 0.2 < seconds < 1.2
    assert tree_cpu_seconds(parent) >= tree_cpu_seconds(child)


async def test_a_run_that_ends_before_its_window_counts_nothing(tree: tuple[int, int]) -> None:
    cpu = ServerCpu(tree[0], warmup=0.0, duration=30.0)
    await cpu.start()
    assert await cpu.seconds() is None
    assert await cpu.seconds() is None  # and the counting task is gone


async def test_a_vanished_server_counts_nothing() -> None:
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await process.wait()
    cpu = ServerCpu(process.pid, warmup=0.0, duration=0.01)
    await cpu.start()
    assert await cpu.seconds() is None
    with pytest.raises(OSError):
        tree_cpu_seconds(process.pid)
