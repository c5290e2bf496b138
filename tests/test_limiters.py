"""The protocol-neutral limiters: token buckets, authentication back-off, the connection gate;
their answers and their bounded memory, on a fake clock."""

from __future__ import annotations

import pytest

from fleetgate.core.admission import AdmissionLimits, ConnectionGate, address_of
from fleetgate.core.backoff import FailureBackoff
from fleetgate.core.buckets import TokenBuckets
from fleetgate.core.errors import ConnectionRateExceeded, TooManyConnections


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_burst_then_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(2.0, 3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0  # keys are independent
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0


def test_bucket_memory_is_bounded() -> None:
    clock = Clock()
    buckets = TokenBuckets(1.0, 2, capacity=100, clock=clock)
    for i in range(10_000):
        buckets.take(f"10.0.{i // 256}.{i % 256}")
    assert len(buckets) <= 100
    clock.now += 10  # every bucket is full again: the next new key sweeps them
    for i in range(100):
        buckets.take(f"k{i}")
    assert len(buckets) <= 100


def test_backoff_blocks_after_failures_and_expires() -> None:
    clock = Clock()
    backoff = FailureBackoff(3, 60, clock=clock)
    backoff.failed("a")
    backoff.failed("a")
    assert backoff.blocked_for("a") == 0.0
    backoff.failed("a")
    assert backoff.blocked_for("a") == pytest.approx(60)
    assert backoff.blocked_for("b") == 0.0
    clock.now += 60
    assert backoff.blocked_for("a") == 0.0
    assert len(backoff) == 0  # expired lazily when read


def test_backoff_failures_outside_the_window_do_not_add_up() -> None:
    clock = Clock()
    backoff = FailureBackoff(2, 10, clock=clock)
    backoff.failed("a")
    clock.now += 11
    backoff.failed("a")
    assert backoff.blocked_for("a") == 0.0


def test_backoff_memory_is_bounded() -> None:
    clock = Clock()
    backoff = FailureBackoff(2, 60, capacity=50, clock=clock)
    for i in range(5_000):
        backoff.failed(f"a{i}")
        backoff.failed(f"b{i}")
        backoff.failed(f"b{i}")
    assert len(backoff) <= 100


def test_gate_counts_and_rate() -> None:
    gate = ConnectionGate(AdmissionLimits(max_per_address=2))
    gate.open("a")
    gate.open("a")
    with pytest.raises(TooManyConnections):
        gate.open("a")
    gate.open("b")
    gate.close("a")
    gate.open("a")
    for _ in range(2):
        gate.close("a")
    gate.close("b")
    assert gate.open_from("a") == 0 and gate.open_from("b") == 0
    rated = ConnectionGate(AdmissionLimits(rate_per_address=0.5, burst_per_address=1))
    rated.open("a")
    with pytest.raises(ConnectionRateExceeded) as refused:
        rated.open("a")
    assert refused.value.retry_after == pytest.approx(2, abs=0.1)
    assert rated.open_from("a") == 1  # a refusal counts nothing


def test_address_of() -> None:
    assert address_of(("127.0.0.1", 5000)) == "127.0.0.1"
    assert address_of(("::1", 5000, 0, 0)) == "::1"
    assert address_of(None) == ""
