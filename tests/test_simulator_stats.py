"""Percentile maths and result accounting of the load generators (no timing involved)."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from fleetgate.simulator.bench_workspace import head_to_head
from fleetgate.simulator.report import BenchReport, Ratio, Run, format_table
from fleetgate.simulator.stats import Histogram, LatencyRecorder, LoadResult, bucket_bounds, bucket_index, merge_all


def nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def test_small_values_have_buckets_of_their_own() -> None:
    for value in range(256):
        assert bucket_index(value) == value
        assert bucket_bounds(value) == (value, value)


def test_buckets_tile_the_range_without_gaps_and_stay_within_one_128th() -> None:
    previous_high = -1
    for index in range(3000):
        low, high = bucket_bounds(index)
        assert low == previous_high + 1
        assert (high - low + 1) / low <= 1 / 128 if low >= 256 else low == high
        assert bucket_index(low) == index and bucket_index(high) == index
        previous_high = high


@pytest.mark.parametrize("q", [1, 50, 90, 95, 99, 99.9, 100])
def test_percentiles_of_small_values_are_exact(q: float) -> None:
    values = list(range(1, 201))
    assert Histogram.of(values).percentile(q) == nearest_rank(values, q)


@pytest.mark.parametrize("q", [50, 90, 99, 99.9])
def test_percentiles_of_large_values_are_at_most_one_128th_above(q: float) -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(9, 1.2)) for _ in range(20_000)]  # around 8 ms, tail to seconds
    exact = nearest_rank(values, q)
    reported = Histogram.of(values).percentile(q)
    assert exact <= reported <= exact * (1 + 1 / 128)


def test_percentile_never_exceeds_the_maximum() -> None:
    histogram = Histogram.of([1000, 1001, 1002])
    assert histogram.percentile(100) == 1002
    assert histogram.summary().max_ms == 1.002


def test_empty_histogram_summarises_to_zeros() -> None:
    summary = Histogram().summary()
    assert summary.count == 0 and summary.p99_ms == 0.0 and summary.max_ms == 0.0
    assert Histogram().percentile(50) == 0


@pytest.mark.parametrize("q", [0, -1, 100.1])
def test_percentile_out_of_range_is_refused(q: float) -> None:
    with pytest.raises(ValueError):
        Histogram.of([1]).percentile(q)


def test_recorder_takes_nanoseconds_and_summary_reports_milliseconds() -> None:
    recorder = LatencyRecorder()
    for ms in (1, 2, 3, 4, 100):
        recorder.record_ns(ms * 1_000_000)
    summary = recorder.freeze().summary()
    assert summary.count == 5
    assert 3.0 <= summary.p50_ms <= 3.0 * (1 + 1 / 128)  # the top of 3 ms's bucket
    assert summary.max_ms == 100.0
    assert summary.mean_ms == 22.0


def test_merged_histograms_equal_one_histogram_of_all_values() -> None:
    rng = random.Random(3)
    a = [rng.randrange(0, 500_000) for _ in range(5000)]
    b = [rng.randrange(0, 50_000) for _ in range(3000)]
    assert Histogram.of(a).merge(Histogram.of(b)) == Histogram.of(a + b)
    assert Histogram().merge(Histogram.of(a)) == Histogram.of(a)


def test_histogram_json_round_trip() -> None:
    histogram = Histogram.of([5, 500, 50_000, 5_000_000])
    assert Histogram.from_json(histogram.to_json()) == histogram


def result(ok: int, window: float = 10.0, errors: dict[str, int] | None = None, cpu: float = 2.0) -> LoadResult:
    return LoadResult(
        kind="closed-loop", connections=10, window_s=window, ok=ok, datapoints_per_request=3,
        histogram=Histogram.of([1000] * ok), errors=errors or {}, total_ok=ok + 5, cpu_s=cpu,
    )


def test_throughput_accounting() -> None:
    r = result(20_000, errors={"HTTP 503": 2})
    assert r.requests_per_s == 2000.0
    assert r.datapoints_per_s == 6000.0
    assert r.error_count == 2
    assert r.generator_cpu_share == 0.2


def test_results_of_parallel_generators_merge() -> None:
    merged = merge_all([result(1000, errors={"HTTP 503": 1}), result(3000, errors={"HTTP 503": 2, "HTTP 500": 1})])
    assert merged.ok == 4000 and merged.requests_per_s == 400.0
    assert merged.errors == {"HTTP 503": 3, "HTTP 500": 1}
    assert merged.connections == 20 and merged.processes == 2
    assert merged.generator_cpu_share == 0.2
    assert merged.histogram.count == 4000
    assert merged.total_ok == 4010


def test_result_json_round_trip_keeps_what_merging_needs() -> None:
    r = result(123, errors={"connection lost: ConnectionResetError": 1})
    back = LoadResult.from_json(r.to_json(histogram=True))
    assert back == r


def test_server_cpu_is_counted_a_request_and_kept_in_json() -> None:
    r = replace(result(20_000), server_cpu_s=0.5)
    assert r.server_cpu_us == pytest.approx(25.0)
    data = r.to_json(histogram=True)
    assert data["server_cpu_s"] == 0.5 and data["server_cpu_us_per_request"] == 25.0
    assert LoadResult.from_json(data) == r
    assert "server_cpu_s" not in result(10).to_json()
    assert result(10).server_cpu_us is None and replace(result(0), server_cpu_s=1.0).server_cpu_us is None


def test_the_table_shows_the_server_cpu_only_where_it_was_counted() -> None:
    counted = Run("gateway_max", "gateway", replace(result(20_000), server_cpu_s=0.5))
    plain = Run("baseline_max", "baseline", result(10_000))
    table = format_table(BenchReport("mqtt", "title", {}, (counted, plain), unit="messages"))
    header, _, first, second = table.splitlines()[2:6]
    assert header.split()[-2:] == ["server", "us/msg"]
    assert first.split()[-1] == "25.0" and second.split()[-1] == "-"
    assert "server" not in format_table(BenchReport("http", "title", {}, (plain,)))


def test_ratios_below_one_keep_two_decimals() -> None:
    assert str(Ratio("p99", 82.34, percent=False)) == "p99: 82.3x"
    assert str(Ratio("p99", 0.032, percent=False)) == "p99: 0.03x"
    assert str(Ratio("share", 1.95)) == "share: 195%"


def test_the_cpu_ratio_needs_both_servers_counted() -> None:
    gateway, baseline = replace(result(20_000), server_cpu_s=0.6), replace(result(20_000), server_cpu_s=0.2)
    ratios = head_to_head("mosquitto", gateway, gateway, baseline, baseline, item="message")
    assert [r.name for r in ratios][-1] == "gateway / mosquitto, server CPU a message at the same rate"
    assert ratios[-1].value == pytest.approx(3.0)
    assert len(head_to_head("mosquitto", gateway, gateway, result(100), result(100))) == 2


def test_priming_counts_in_totals_only() -> None:
    primed = result(10, errors={"HTTP 401": 1}).with_priming(result(7, errors={"HTTP 401": 2}))
    assert primed.ok == 10
    assert primed.total_ok == 15 + 12
    assert primed.errors == {"HTTP 401": 3}
