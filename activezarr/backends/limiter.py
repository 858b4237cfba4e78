"""How many requests a client keeps in flight to one server: a bound that follows latency.

Latency that comes from the network (the same at any concurrency) is hidden by sending more
requests at once; latency that comes from the server's own queue is not, and only floods it.
``InFlightLimit`` tells them apart the way TCP Vegas does: it keeps the lowest round trip seen
(the network and service time) and a moving average of recent ones. While the average stays
near the lowest and the limit is (nearly) in use, the limit grows by one per reply (about a
quarter per round trip); when the average
climbs well above the lowest (a queue builds up at the server) it shrinks by one; a timeout or
a "busy" answer (429, 503) cuts it by a quarter. It always stays within ``[minimum, maximum]``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

GROW_BELOW = 1.5  # average / lowest round trip under which more requests may go out
SHRINK_ABOVE = 3.0  # ... over which a queue is building at the server
SMOOTHING = 0.2  # weight of the newest round trip in the moving average
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
        self.limit = min(self.maximum, max(self.minimum, int(initial)))
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
            busy = 4 * self.in_flight >= 3 * self.limit  # the limit is (nearly) in use
            self.in_flight -= 1
            if outcome == "overload":
                self.limit = max(self.minimum, int(self.limit * 0.75))
            elif outcome == "ok":
                self._min_rtt = min(self._min_rtt * MIN_RTT_DRIFT, rtt)
                avg = rtt if self._avg_rtt is None else self._avg_rtt
                self._avg_rtt = avg = (1 - SMOOTHING) * avg + SMOOTHING * rtt
                if avg <= GROW_BELOW * self._min_rtt and busy:
                    self.limit = min(self.maximum, self.limit + 1)
                elif avg > SHRINK_ABOVE * self._min_rtt:
                    self.limit = max(self.minimum, self.limit - 1)
            self._cond.notify_all()

    def __repr__(self) -> str:
        return f"<InFlightLimit {self.in_flight}/{self.limit} in [{self.minimum}, {self.maximum}]>"
