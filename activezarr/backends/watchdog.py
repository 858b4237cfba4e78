"""Cuts a reply still arriving when its deadline passes: one thread for every request.

``requests`` bounds each wait for bytes (its read timeout) but not a reply as a whole: a
server that sends one byte just before each timeout keeps a request alive for ever. A
``Watchdog`` runs ``cut`` callbacks (shutting the reply's socket down, which ends the blocked
read at once) when their deadlines pass; ``arm`` returns a ``Timer`` to ``disarm`` when the
reply is read in time. One daemon thread and a heap serve every request of the process.
``tracking_adapter`` makes a session's connections known to ``Watched`` as soon as their
reply is awaited, so that a deadline covers the headers as well as the body.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self


@dataclass
class Timer:
    """One armed deadline; ``fired`` is set when its cut ran."""

    key: int
    fired: threading.Event = field(default_factory=threading.Event)


class Watchdog:
    """Runs ``cut()`` for each armed timer whose deadline passed before it was disarmed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None], Timer]] = []
        self._live: set[int] = set()
        self._keys = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, cut: Callable[[], None]) -> Timer:
        timer = Timer(next(self._keys))
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + seconds, timer.key, cut, timer))
            self._live.add(timer.key)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="activezarr-watchdog", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return timer

    def disarm(self, timer: Timer) -> None:
        with self._cond:
            self._live.discard(timer.key)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                when, key, cut, timer = self._heap[0]
                if key not in self._live:
                    heapq.heappop(self._heap)
                    continue
                wait = when - time.monotonic()
                if wait > 0:  # a deadline of years is still waited for in steps Python takes
                    self._cond.wait(min(wait, threading.TIMEOUT_MAX))
                    continue
                heapq.heappop(self._heap)
                self._live.discard(key)
            timer.fired.set()
            try:
                cut()
            except Exception:  # noqa: BLE001, S110 - the reply may have ended meanwhile
                pass


WATCHDOG = Watchdog()


_current = threading.local()  # the ``Watched`` record of the request this thread sends


@dataclass
class Watched:
    """The connection a request went out on, once its reply is awaited (``tracking_adapter``)."""

    connection: object = None

    def __enter__(self) -> Self:
        _current.watched = self
        return self

    def __exit__(self, *exc) -> None:
        _current.watched = None

    def cut(self) -> None:
        """Shut the connection's socket down both ways: a blocked read returns at once."""
        sock = getattr(self.connection, "sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)


class _Tracked:
    """A urllib3 connection that tells the thread's ``Watched`` record it is the one whose
    reply (headers and body) is awaited."""

    def getresponse(self, *args, **kwargs):
        watched = getattr(_current, "watched", None)
        if watched is not None:
            watched.connection = self
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


def tracking_adapter(**options):
    """A ``requests`` HTTPAdapter whose connections report themselves to ``Watched``."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class Connection(_Tracked, HTTPConnection):
        pass

    class SecureConnection(_Tracked, HTTPSConnection):
        pass

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class SecurePool(HTTPSConnectionPool):
        ConnectionCls = SecureConnection

    adapter = HTTPAdapter(**options)
    adapter.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": SecurePool}
    return adapter
