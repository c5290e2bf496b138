"""What the simulated devices sent and what the gateway acknowledged, and the accounting
of a run against what PostgreSQL holds afterwards.

Every message carries one data point, key ``seq``, whose value is the message's
sequence number, at an explicit ts (``base_ts + seq``), so each message is one known
row (device, key, ts) of ts_kv and can be looked up.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

KEY = "seq"


@dataclass(frozen=True, slots=True)
class Message:
    device: str  # the device's name
    seq: int
    ts: int

    @property
    def body(self) -> bytes:
        return b'{"ts":%d,"values":{"seq":%d}}' % (self.ts, self.seq)


@dataclass(slots=True)
class DeviceLog:
    """One device's messages: each made once, acknowledged at most once (counted once)."""

    name: str
    base_ts: int = field(default_factory=lambda: time.time_ns() // 1_000_000 - 60_000)
    seq: int = 0
    sent: dict[int, Message] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)
    first_acked_after: dict[float, float] = field(default_factory=dict)  # mark -> first ack at or after it

    def new_message(self) -> Message:
        self.seq += 1
        message = Message(self.name, self.seq, self.base_ts + self.seq)
        self.sent[self.seq] = message
        return message

    def ack(self, message: Message) -> None:
        self.acked.add(message.seq)
        now = time.monotonic()
        for mark, first in self.first_acked_after.items():
            if not first and now >= mark:
                self.first_acked_after[mark] = now

    def watch(self, mark: float) -> None:
        """Note the first acknowledgement at or after ``mark`` (time.monotonic())."""
        self.first_acked_after.setdefault(mark, 0.0)


class Clock:
    """The load's phases: devices make new messages until ``produce_until``, then only
    retransmit what is unacknowledged, until ``give_up_at``."""

    def __init__(self, produce_for: float, drain_for: float) -> None:
        now = asyncio.get_running_loop().time()
        self.drain_for = drain_for
        self.produce_until = now + produce_for
        self.give_up_at = self.produce_until + drain_for
        self.events: Counter[str] = Counter()  # what the clients met: "http 503", "mqtt reconnect"...

    def producing(self) -> bool:
        return asyncio.get_running_loop().time() < self.produce_until

    def left(self) -> float:
        return self.give_up_at - asyncio.get_running_loop().time()

    def stop_producing(self) -> None:
        """No new messages from now on; retransmissions for ``drain_for`` more at most."""
        now = asyncio.get_running_loop().time()
        if now < self.produce_until:
            self.produce_until = now
            self.give_up_at = now + self.drain_for


@dataclass(frozen=True, slots=True)
class Accounting:
    scenario: str
    sent: int
    acknowledged: int
    stored: int
    lost: int  # acknowledged, not stored
    duplicated: int  # rows beyond one per (device, key, ts) / per message
    unacknowledged_missing: int  # sent, never acknowledged, not stored after the retransmissions
    seconds: float
    events: str
    recovery_ms: float | None = None  # the database back -> the first acknowledgement after that

    @staticmethod
    def header() -> str:
        return (f"{'scenario':<22} {'sent':>7} {'acked':>7} {'stored':>7} {'lost':>5} {'dup':>5} "
                f"{'missing':>7} {'secs':>6} {'recov ms':>8}  client events")

    def row(self) -> str:
        return (f"{self.scenario:<22} {self.sent:>7} {self.acknowledged:>7} {self.stored:>7} {self.lost:>5} "
                f"{self.duplicated:>5} {self.unacknowledged_missing:>7} {self.seconds:>6.1f} {self.recovery():>8}  "
                f"{self.events}")

    def recovery(self) -> str:
        return "-" if self.recovery_ms is None else f"{self.recovery_ms:.0f}"


# Filled by the scenarios, printed by conftest.pytest_terminal_summary.
RESULTS: list[Accounting] = []


def account(scenario: str, logs: list[DeviceLog], stored_rows: dict[str, list[tuple[int, int]]],
            seconds: float, events: Counter[str], back_at: float | None = None) -> Accounting:
    """``stored_rows``: device name -> [(ts, seq value)] read from ts_kv for key ``seq``; ``back_at``:
    when the database was back (time.monotonic()), watched with DeviceLog.watch."""
    sent = acked = stored = lost = duplicated = missing = 0
    for log in logs:
        rows = stored_rows.get(log.name, [])
        by_ts = Counter(ts for ts, _ in rows)
        by_seq = Counter(value for _, value in rows)
        duplicated += sum(n - 1 for n in by_ts.values()) + sum(n - 1 for n in by_seq.values())
        present = {seq for ts, seq in rows if seq in log.sent and log.sent[seq].ts == ts}
        sent += len(log.sent)
        acked += len(log.acked)
        stored += len(present & log.sent.keys())
        lost += len(log.acked - present)
        missing += len(log.sent.keys() - log.acked - present)
    shown = ", ".join(f"{k} {v}" for k, v in sorted(events.items()))
    recovery = None
    if back_at is not None:
        firsts = [first for log in logs if (first := log.first_acked_after.get(back_at))]
        recovery = (min(firsts) - back_at) * 1000 if firsts else None
    return Accounting(scenario, sent, acked, stored, lost, duplicated, missing, seconds, shown, recovery)
