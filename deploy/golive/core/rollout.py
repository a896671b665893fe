"""Rolling batches and the failure threshold, parsed from --serial and --max-fail."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

from golive.core.errors import BadInput

T = TypeVar("T")


def _amount(value: str, option: str) -> tuple[float, bool]:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%?)\s*", value or "")
    if not match:
        raise BadInput(f"{option} {value!r}: expected a number of hosts (2) or a percentage (25%)")
    return float(match.group(1)), bool(match.group(2))


def batches(items: Sequence[T], serial: str | None) -> list[list[T]]:
    """--serial 2 or --serial 25%: consecutive batches; none: one batch with every host."""
    if not items:
        return []
    if not serial:
        return [list(items)]
    amount, percent = _amount(serial, "--serial")
    size = int(len(items) * amount / 100 + 0.999999) if percent else int(amount)
    if size < 1 or (percent and amount > 100):
        raise BadInput(f"--serial {serial!r}: a batch must hold at least one host and at most all of them")
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def max_fail_threshold(max_fail: str | None) -> float:
    """The share of hosts (0..1) whose failure stops further batches; 1.0 = never stop."""
    if not max_fail:
        return 1.0
    amount, percent = _amount(max_fail, "--max-fail")
    if not percent:
        raise BadInput(f"--max-fail {max_fail!r}: give a percentage, e.g. 20%")
    if amount > 100:
        raise BadInput(f"--max-fail {max_fail!r}: at most 100%")
    return amount / 100


def crossed(failed: int, total: int, threshold: float) -> bool:
    return total > 0 and threshold < 1.0 and failed / total > threshold
