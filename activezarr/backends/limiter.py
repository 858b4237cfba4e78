"""How many requests a client keeps in flight to one server: a bound that follows latency.

Latency that comes from the network (the same at any concurrency) is hidden by sending more
requests at once; latency that comes from the server's own queue is not, and only floods it.
``InFlightLimit`` tells them apart by the ratio of the lowest round trip seen (network and
service time) to a moving average of recent ones, as Netflix's gradient limiter does: each
reply moves the limit towards ``limit * gradient + sqrt(limit)``, where the gradient is
``2 * lowest / average`` kept within [0.5, 1]. While round trips stay within twice the lowest
the limit grows (about ``0.2 * sqrt(limit)`` per reply); when a queue builds up at the server
it settles near twice the requests the network itself holds (throughput x lowest round trip).
A timeout or a "busy" answer (429, 503) cuts it by a quarter. It always stays within
``[minimum, maximum]``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

TOLERANCE = 2.0  # average / lowest round trip accepted before the limit stops growing
SMOOTHING = 0.2  # weight of the newest sample in the moving averages
MIN_RTT_DRIFT = 1.001  # the lowest round trip forgets slowly (routes and servers change)


class InFlightLimit:
    """A counting gate whose size adapts to round-trip times.

    Examples
    --------
    >>> limit = InFlightLimit(initial=2, minimum=1, maximum=8)
    >>> with limit.slot() as outcome:
    ...     outcome("ok")  # the server answered
    >>> 1 <= limit.limit <= 8
    True
    """

    def __init__(
        self,
        initial: int = 16,
        minimum: int = 4,
        maximum: int = 64,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.minimum = max(1, int(minimum))
        self.maximum = max(self.minimum, int(maximum))
        self._limit = float(min(self.maximum, max(self.minimum, int(initial))))
        self.in_flight = 0
        self.peak = 0  # most requests that were in flight at once
        self._clock = clock
        self._cond = threading.Condition()
        self._min_rtt = math.inf
        self._avg_rtt: float | None = None

    @contextmanager
    def slot(self) -> Iterator:
        """Wait for room, then hold one place. Call the yielded function with ``"ok"`` when
        the server answered (its round trip is then a sample), or ``"overload"`` when the
        request timed out or the server said it is busy (429, 503); other failures (a 500,
        a cut connection) say nothing about load and change nothing."""
        with self._cond:
            while self.in_flight >= self.limit:
                self._cond.wait()
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        start = self._clock()
        outcome: list[str] = []
        try:
            yield outcome.append
        finally:
            self._release(self._clock() - start, outcome[-1] if outcome else None)

    def _release(self, rtt: float, outcome: str | None) -> None:
        with self._cond:
            self.in_flight -= 1
            if outcome == "overload":
                self._limit *= 0.75
            elif outcome == "ok":
                self._min_rtt = min(self._min_rtt * MIN_RTT_DRIFT, rtt)
                avg = rtt if self._avg_rtt is None else self._avg_rtt
                self._avg_rtt = avg = (1 - SMOOTHING) * avg + SMOOTHING * rtt
                gradient = min(1.0, max(0.5, TOLERANCE * self._min_rtt / max(avg, 1e-9)))
                target = self._limit * gradient + math.sqrt(self._limit)
                self._limit = (1 - SMOOTHING) * self._limit + SMOOTHING * target
            self._limit = min(float(self.maximum), max(float(self.minimum), self._limit))
            self._cond.notify_all()

    @property
    def limit(self) -> int:
        """Requests that may be in flight now."""
        return int(self._limit)

    def __repr__(self) -> str:
        return f"<InFlightLimit {self.in_flight}/{self.limit} in [{self.minimum}, {self.maximum}]>"
