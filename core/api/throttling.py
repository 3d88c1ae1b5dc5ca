"""Rate limits that hold across the web processes: a counter per caller and window in the shared cache
(Redis, or the database cache of `core.cache`), increased atomically, so N processes allow N times nothing."""

from __future__ import annotations

import math

from rest_framework.throttling import SimpleRateThrottle


class SharedRateThrottle(SimpleRateThrottle):
    """REST framework's rate (`"600/minute"`) counted in fixed windows: the first request of a window adds
    its counter (expiring with the window), every request increases it; past the rate the answer is 429
    until the window ends (`wait`)."""

    def _window(self) -> tuple[str, float]:
        self.now = self.timer()
        start = math.floor(self.now / self.duration) * self.duration
        return f"{self.key}:{int(start)}", start + self.duration

    def count(self) -> int:
        """Increase the caller's counter of this window; its new value."""
        key, ends = self._window()
        self.window_ends = ends
        self.cache.add(key, 0, timeout=math.ceil(ends - self.now) + 1)
        try:
            return self.cache.incr(key)
        except ValueError:  # expired between the two calls
            self.cache.set(key, 1, timeout=math.ceil(ends - self.now) + 1)
            return 1

    def current(self) -> int:
        """The caller's counter of this window, unchanged."""
        key, self.window_ends = self._window()
        return self.cache.get(key, 0)

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        return self.count() <= self.num_requests

    def wait(self):
        return max(1.0, self.window_ends - self.now)
