"""The one clock. Everything that asks "what time is it" asks a :class:`Clock`.

Live runs use :class:`WallClock`; streams, the demo and backtests drive a :class:`SimulatedClock`
from the recorded stream's times, so a recording behaves exactly as it would have live.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Source of the current time in integer microseconds since the epoch (UTC)."""

    def now_us(self) -> int: ...


class WallClock:
    """The real time."""

    def now_us(self) -> int:
        return time.time_ns() // 1000


class SimulatedClock:
    """A clock that only moves when told to (never backwards).

    Examples
    --------
    >>> c = SimulatedClock(10)
    >>> c.advance_to(25); c.now_us()
    25
    >>> c.advance_to(5); c.now_us()
    25
    """

    def __init__(self, start_us: int = 0) -> None:
        self._now = start_us

    def now_us(self) -> int:
        return self._now

    def advance_to(self, t_us: int) -> None:
        """Move to ``t_us`` if it is later than now."""
        self._now = max(self._now, t_us)
