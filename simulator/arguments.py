"""Value parsers for the simulator's command-line options: numbers, checked as they are read."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = _parse(kind, text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    return parse


def not_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = _parse(kind, text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must not be negative, not {text}")
        return value

    return parse


def in_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(_parse(int, text))
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}..{high}, not {text}")
        return value

    return parse


def _parse(kind: Callable[[str], Any], text: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value
