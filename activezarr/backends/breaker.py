"""A circuit breaker per Reductionist server: stop asking a server that keeps failing.

States: *closed* (requests go out; consecutive failed attempts are counted, any success resets
the count), *open* (after ``threshold`` consecutive failures: no request goes out for
``cooldown`` seconds; callers fall back at once), *half-open* (after the cooldown one trial
request goes out; its success closes the breaker, its failure opens it again).

Breakers are shared per server URL within a process (``breaker_for``), so that every
``Active`` of a catalog reduction learns at once that a server is down; pass your own
``CircuitBreaker`` to ``ReductionistBackend(breaker=...)`` to keep one private.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# twice the most requests in flight (64): a load spike that times out every request in flight
# at once is not a dead server
DEFAULT_THRESHOLD = 128
DEFAULT_COOLDOWN = 30.0


class CircuitBreaker:
    """Counts consecutive failures of one server and says whether to ask it.

    Examples
    --------
    >>> b = CircuitBreaker(threshold=2, cooldown=60)
    >>> b.failure(), b.failure(), b.allow()
    (False, True, False)
    >>> b.success(); b.allow()
    True
    """

    def __init__(
        self,
        threshold: int = DEFAULT_THRESHOLD,
        cooldown: float = DEFAULT_COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = max(1, int(threshold))
        self.cooldown = float(cooldown)
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False  # a half-open trial request is out
        self.trips = 0  # times the breaker opened

    @property
    def failures(self) -> int:
        """Consecutive failed attempts so far."""
        return self._failures

    def is_open(self) -> bool:
        """True while requests must not go out (open, cooldown not over, or a trial is out)."""
        with self._lock:
            if self._opened_at is None:
                return False
            return self._trial or self._clock() < self._opened_at + self.cooldown

    def allow(self) -> bool:
        """May a request go out now? After the cooldown, the first caller gets the trial."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._trial or self._clock() < self._opened_at + self.cooldown:
                return False
            self._trial = True
            return True

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial = False

    def failure(self) -> bool:
        """Record a failed attempt; True when this failure opened the breaker."""
        with self._lock:
            self._failures += 1
            if self._opened_at is not None:  # a failed trial (or a late reply): stay open
                self._opened_at = self._clock()
                self._trial = False
                return False
            if self._failures >= self.threshold:
                self._opened_at = self._clock()
                self.trips += 1
                return True
            return False

    @property
    def state(self) -> str:
        """ "open" (requests held back) or "closed"."""
        return "open" if self.is_open() else "closed"

    def __repr__(self) -> str:
        # stable (no state): dask workers key their backends by the options' repr
        return f"CircuitBreaker(threshold={self.threshold}, cooldown={self.cooldown:g})"

    def __getstate__(self) -> dict:
        """Pickles as a fresh, closed breaker with the same settings (for dask workers)."""
        return {"threshold": self.threshold, "cooldown": self.cooldown}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["threshold"], state["cooldown"])


_BREAKERS: dict[str, CircuitBreaker] = {}
_BREAKERS_LOCK = threading.Lock()


def breaker_for(server: str) -> CircuitBreaker:
    """The process-wide breaker of ``server`` (created closed on first use)."""
    with _BREAKERS_LOCK:
        if server not in _BREAKERS:
            _BREAKERS[server] = CircuitBreaker()
        return _BREAKERS[server]


def forget_breaker(server: str) -> None:
    """Drop ``server``'s shared breaker (the next ``breaker_for`` starts closed)."""
    with _BREAKERS_LOCK:
        _BREAKERS.pop(server, None)
