"""The back-off between retries and the outage log (gateway/retry.py)."""

from __future__ import annotations

import logging

import pytest

from fleetgate.core.retry import Backoff, Outage


def test_delays_grow_by_the_factor_up_to_the_maximum() -> None:
    backoff = Backoff(1, 30)
    assert [backoff.next() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_reset_starts_again_from_the_first_delay() -> None:
    backoff = Backoff(0.1, 5, factor=3)
    assert [backoff.next() for _ in range(3)] == pytest.approx([0.1, 0.3, 0.9])
    backoff.reset()
    assert backoff.next() == pytest.approx(0.1)


def test_jitter_only_shortens_a_delay_by_up_to_its_fraction() -> None:
    draws = iter([0.0, 1.0, 0.5])
    backoff = Backoff(4, 100, jitter=0.25, rng=lambda: next(draws))
    assert [backoff.next() for _ in range(3)] == pytest.approx([4, 8 * 0.75, 16 * 0.875])


@pytest.mark.parametrize("arguments", [
    {"first": 0, "maximum": 1}, {"first": 2, "maximum": 1}, {"first": 1, "maximum": 2, "factor": 0.5},
    {"first": 1, "maximum": 2, "jitter": 1.5}, {"first": 1, "maximum": 2, "jitter": -0.1},
])
def test_nonsense_is_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**arguments)


def test_an_outage_is_one_warning_and_one_summary(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    outage = Outage(logging.getLogger("test.retry"), clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger="test.retry"):
        outage.recovered("not down")  # no outage, nothing to say
        for attempt in range(5):
            outage.failed("database unavailable: %s", f"refused {attempt}")
        now[0] += 12.5
        outage.recovered("database back")
        outage.recovered("database back")  # told once: the outage is over
    records = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert records == [
        (logging.WARNING, "database unavailable: refused 0"),
        *[(logging.DEBUG, f"database unavailable: refused {n}") for n in range(1, 5)],
        (logging.INFO, "database back after 12.5 s (5 failures)"),
    ]
    assert not any(r.exc_info for r in caplog.records)


def test_the_next_outage_warns_again(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage(logging.getLogger("test.retry"))
    with caplog.at_level(logging.WARNING, logger="test.retry"):
        outage.failed("down")
        outage.recovered("up")
        outage.failed("down")
    assert [r.getMessage() for r in caplog.records] == ["down", "down"]
