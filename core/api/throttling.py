"""Rate limits that hold across the web processes, over a sliding window kept in the shared cache (Redis, or the
database cache of `core.cache`), so N processes allow N times nothing.

A fixed window (one counter per calendar minute) lets a client spend its rate in the last second of a minute
and again in the first second of the next: twice the rate within two seconds. Here the period is cut into
`SLICES` slices, each a counter in the cache increased atomically (Redis INCR, a locked row in the database);
a request is let through when the slices of the last period (the current one included, so slightly more than
a period) hold no more than the rate. At no moment, then, has a caller been let through more than the rate
within the last period; a request comes free as the one it follows leaves the window.
"""

from __future__ import annotations

import math

from rest_framework.throttling import SimpleRateThrottle

SLICES = 60  # a minute's rate is counted per second


class SharedRateThrottle(SimpleRateThrottle):
    """REST framework's rate (`"600/minute"`) over a sliding window of `SLICES` slices in the shared cache.

    `allow_request` counts a request and takes the count back when the request is refused, so a client that
    keeps asking is let through as soon as the window has room; `count` (failed authentications) keeps every
    count. `wait` is the time until the oldest counts leave the window far enough for one more request."""

    def _slices(self) -> tuple[float, int, list[str]]:
        """The slice width, the current slice's number and the keys of the window's slices, oldest first."""
        self.now = self.timer()
        width = self.duration / SLICES
        current = math.floor(self.now / width)
        return width, current, [f"{self.key}:{n}" for n in range(current - SLICES, current + 1)]

    def _timeout(self, width: float) -> int:
        return math.ceil(self.duration + 2 * width) + 1

    def _read(self, width: float, current: int, keys: list[str]) -> int:
        """The window's total; keeps what `wait` needs."""
        found = self.cache.get_many(keys)
        self.counts = [(current - SLICES + i, int(found.get(key, 0) or 0)) for i, key in enumerate(keys)]
        self.width = width
        return sum(n for _, n in self.counts)

    def _increase(self, key: str, width: float, delta: int = 1) -> None:
        self.cache.add(key, 0, timeout=self._timeout(width))
        try:
            self.cache.incr(key, delta)
        except ValueError:  # expired between the two calls
            self.cache.set(key, max(delta, 0), timeout=self._timeout(width))

    def count(self) -> int:
        """Count a request in the current slice; the window's new total."""
        width, current, keys = self._slices()
        self._increase(keys[-1], width)
        return self._read(width, current, keys)

    def current(self) -> int:
        """The window's total, unchanged."""
        width, current, keys = self._slices()
        return self._read(width, current, keys)

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        if self.count() <= self.num_requests:
            return True
        # Refused: the count is taken back, so only requests let through fill the window.
        self._increase(f"{self.key}:{self.counts[-1][0]}", self.width, -1)
        self.counts[-1] = (self.counts[-1][0], self.counts[-1][1] - 1)
        return False

    def wait(self):
        """Seconds until the window has room for one more request."""
        counts = getattr(self, "counts", None)
        if not counts:
            return 1.0
        excess = sum(n for _, n in counts) - self.num_requests + 1
        for number, n in counts:
            excess -= n
            if excess <= 0:
                # Slice `number` leaves the window when slice `number + SLICES + 1` begins.
                return max(1.0, (number + SLICES + 1) * self.width - self.now)
        return self.duration
