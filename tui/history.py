"""Short histories of counters across snapshots, for rates and sparklines."""
from __future__ import annotations

from collections import deque

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 16) -> str:
    """Block characters scaled to the largest value; blank when there is nothing yet."""
    values = values[-width:]
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(int(v / top * (len(SPARK) - 1) + 0.5), len(SPARK) - 1)]
                   for v in values)


class History:
    """Per key, the last samples of a counter (rates) or a gauge (values)."""

    def __init__(self, length: int = 60):
        self.length = length
        self._last: dict[str, tuple[float, int]] = {}  # key: (time, total) of the last sample
        self._series: dict[str, deque[float]] = {}

    def count(self, key: str, at: float, total: int) -> None:
        """Record a counter's total at time `at`; the series holds its rate per second."""
        previous = self._last.get(key)
        self._last[key] = (at, total)
        if previous is not None and at > previous[0]:
            self._add(key, max(total - previous[1], 0) / (at - previous[0]))

    def gauge(self, key: str, at: float, value: float) -> None:
        """Record a value at time `at` (one sample per point in time)."""
        previous = self._last.get(key)
        if previous is None or at > previous[0]:
            self._last[key] = (at, 0)
            self._add(key, value)

    def _add(self, key: str, value: float) -> None:
        self._series.setdefault(key, deque(maxlen=self.length)).append(value)

    def latest(self, key: str) -> float | None:
        series = self._series.get(key)
        return series[-1] if series else None

    def series(self, key: str) -> list[float]:
        return list(self._series.get(key, ()))

    def forget(self, keep: set[str]) -> None:
        """Drop the keys that are gone (deleted topics, groups)."""
        for key in set(self._series) - keep:
            del self._series[key]
        for key in set(self._last) - keep:
            del self._last[key]
