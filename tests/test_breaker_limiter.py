"""The circuit breaker and the adaptive in-flight limit of the Reductionist client, on their own.

Both take a clock: the tests move it by hand, so nothing sleeps and nothing is timed.
"""

from __future__ import annotations

import pickle
import threading

import pytest

from activezarr.backends.breaker import CircuitBreaker, breaker_for, forget_breaker
from activezarr.backends.limiter import InFlightLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------ breaker
def test_breaker_opens_after_threshold_consecutive_failures():
    b = CircuitBreaker(threshold=3, cooldown=10, clock=Clock())
    assert [b.failure(), b.failure()] == [False, False] and b.allow()
    b.success()  # a success in between: the count starts again
    assert [b.failure(), b.failure(), b.failure()] == [False, False, True]
    assert b.is_open() and not b.allow() and b.trips == 1


def test_breaker_half_open_lets_one_trial_through():
    clock = Clock()
    b = CircuitBreaker(threshold=1, cooldown=10, clock=clock)
    b.failure()
    clock.now = 9.9
    assert not b.allow()
    clock.now = 10.0
    assert b.allow()  # the trial
    assert not b.allow() and b.is_open()  # the others wait for its outcome
    b.failure()  # the trial failed: open for another cooldown
    clock.now = 19.9
    assert not b.allow()
    clock.now = 20.0
    assert b.allow()
    b.success()
    assert b.allow() and not b.is_open() and b.failures == 0 and b.trips == 1


def test_breaker_pickles_closed_with_its_settings():
    b = CircuitBreaker(threshold=2, cooldown=5)
    b.failure(), b.failure()
    copy = pickle.loads(pickle.dumps(b))
    assert b.state == "open" and copy.state == "closed"
    assert (copy.threshold, copy.cooldown) == (2, 5) and repr(copy) == repr(b)


def test_breakers_are_shared_per_server():
    url = "http://breaker-test.invalid:1"
    assert breaker_for(url) is breaker_for(url)
    assert breaker_for(url) is not breaker_for(url + "0")
    first = breaker_for(url)
    forget_breaker(url)
    assert breaker_for(url) is not first
    forget_breaker(url)


# ------------------------------------------------------------------------------ limiter
def fill(limit: InFlightLimit, clock: Clock, rtt: float, outcome="ok", n: int | None = None):
    """Hold every free slot at once, then release them ``rtt`` later."""
    slots = []
    for _ in range(n or limit.limit):
        cm = limit.slot()
        slots.append((cm, cm.__enter__()))
    clock.now += rtt
    for cm, answered in slots:
        if outcome:
            answered(outcome)
        cm.__exit__(None, None, None)


def test_limit_grows_while_round_trips_stay_at_the_floor():
    clock = Clock()
    limit = InFlightLimit(initial=4, minimum=2, maximum=32, clock=clock)
    for _ in range(20):
        fill(limit, clock, 0.020)  # network latency: the same at any concurrency
    assert limit.limit == 32 and limit.peak == 32


def test_limit_shrinks_when_the_server_queues():
    clock = Clock()
    limit = InFlightLimit(initial=16, minimum=4, maximum=64, clock=clock)
    fill(limit, clock, 0.010)
    before = limit.limit
    for _ in range(10):
        fill(limit, clock, 0.050)  # five times the floor: a queue at the server
    assert limit.minimum <= limit.limit < before


def test_limit_is_cut_by_overload_and_stays_in_bounds():
    clock = Clock()
    limit = InFlightLimit(initial=40, minimum=4, maximum=64, clock=clock)
    fill(limit, clock, 0.01, outcome=None, n=1)  # a 500 or a cut connection: no change
    assert limit.limit == 40
    fill(limit, clock, 0.01, outcome="overload", n=1)  # a timeout, 429 or 503
    assert limit.limit == 30
    for _ in range(20):
        fill(limit, clock, 0.01, outcome="overload", n=1)
    assert limit.limit == 4


def test_limit_bounds_concurrent_requests():
    limit = InFlightLimit(initial=3, minimum=1, maximum=3)
    barrier_passed = []
    lock = threading.Lock()
    inside = [0]

    def request():
        with limit.slot() as answered:
            with lock:
                inside[0] += 1
                barrier_passed.append(inside[0])
            with lock:
                inside[0] -= 1
            answered("ok")

    threads = [threading.Thread(target=request) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(barrier_passed) <= 3 and limit.peak <= 3 and limit.in_flight == 0


@pytest.mark.parametrize("initial", [0, 1000])
def test_limit_starts_within_bounds(initial):
    limit = InFlightLimit(initial=initial, minimum=2, maximum=8)
    assert 2 <= limit.limit <= 8
