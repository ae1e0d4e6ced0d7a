"""Token buckets for requests-per-minute and tokens-per-minute limits.

A bucket refills continuously at ``per_minute / 60`` per second and holds at most ten
seconds' worth, so a run starts briskly without a whole minute's burst. Token costs are
estimated before a call and corrected afterwards from the server's ``usage``.
"""
from __future__ import annotations

import asyncio
import time

BURST_SECONDS = 10.0


class TokenBucket:
    """An asyncio token bucket; waiters are served in arrival order."""

    def __init__(self, per_minute: float, burst_seconds: float = BURST_SECONDS) -> None:
        if per_minute <= 0:
            raise ValueError("a rate limit must be positive")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.level = self.capacity
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until ``amount`` is available and take it (clamped to the capacity, so a
        request bigger than the bucket still goes through once the bucket is full)."""
        amount = min(amount, self.capacity)
        async with self._lock:
            while True:
                self._refill()
                if self.level >= amount:
                    self.level -= amount
                    return
                await asyncio.sleep((amount - self.level) / self.rate)

    def adjust(self, delta: float) -> None:
        """Give back an over-estimate (delta > 0) or charge an under-estimate (delta < 0;
        the bucket may go into debt, which later callers wait out)."""
        self._refill()
        self.level = min(self.capacity, self.level + delta)
