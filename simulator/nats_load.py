"""What one NATS node does for the downlink bus: per-device subscriptions and routed messages.

    python -m fleetgate.simulator.nats_load [--devices 10000] [--messages 200000] [--publishers 2]

One Debian ``nats-server`` on loopback; one nats-py client subscribed to ``--devices`` device
subjects as a gateway process is (one subscription per device held, the bus's subject scheme), its
resident memory a subscription measured; ``--publishers`` processes publishing ``--messages``
downlink-sized events (200 bytes) to random devices as fast as they can; the subscriber counting
them. Printed: messages a second through the node, and the node's own CPU meanwhile (from
/proc), so messages a second per core of a NATS node. The Python clients, not the server, are the
limit on a small machine: the per-core figure is the one to use.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time

import nats

from fleetgate.simulator.nats_server import nats_server
from fleetgate.simulator.processes import tree_cpu_seconds
from fleetgate.simulator.runtime import run

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


async def publish(url: str, devices: int, messages: int) -> None:
    client = await nats.connect(url)
    payload = b'{"t":"attributes","d":"%s","u":{"interval":15,"mode":"eco"},"o":"fleetgate.p.0123456789abcdef"}'
    subjects = [f"fleetgate.d.{n:024x}".encode() for n in range(devices)]
    for n in range(messages):
        subject = random.choice(subjects)
        await client.publish(subject.decode(), payload % subject[-24:])
        if n % 1000 == 999:
            await client.flush()
    await client.flush()
    await client.close()


async def main(args: argparse.Namespace) -> None:
    async with nats_server() as server:
        url, server_pid = server.url, server.pid
        subscriber = await nats.connect(url)
        received = 0
        done = asyncio.Event()
        total = args.messages * args.publishers

        async def count(_msg: object) -> None:
            nonlocal received
            received += 1
            if received == total:
                done.set()

        before = rss()
        for n in range(args.devices):
            await subscriber.subscribe(f"fleetgate.d.{n:024x}", cb=count)
        await subscriber.flush()
        per_subscription = (rss() - before) / args.devices
        cpu = tree_cpu_seconds(server_pid)
        started = time.monotonic()
        publishers = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fleetgate.simulator.nats_load", "--publish", url, "--devices", str(args.devices),
            "--messages", str(args.messages)) for _ in range(args.publishers)]
        for process in publishers:
            await process.wait()
        async with asyncio.timeout(60):
            await done.wait()
        seconds = time.monotonic() - started
        server_cpu = (tree_cpu_seconds(server_pid) - cpu) / seconds
        await subscriber.close()
    rate = received / seconds
    print(f"{args.devices:,} device subscriptions: {per_subscription / 1024:.2f} KiB each in the subscribing client")
    print(f"{received:,} messages in {seconds:.1f} s: {rate:,.0f}/s through one node, the node at {server_cpu:.0%} "
          f"of a core: {rate / max(server_cpu, 0.01):,.0f} messages/s per NATS core")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fleetgate.simulator.nats_load",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=200_000, help="per publisher")
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--publish", metavar="URL", help=argparse.SUPPRESS)  # a publisher process
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    if arguments.publish:
        run(publish(arguments.publish, arguments.devices, arguments.messages))
    else:
        run(main(arguments))
