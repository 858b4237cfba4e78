"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1: a real TCP hop between a client and a server.

Each ``POST /v2/...`` request that passes through gets one fault, chosen with the plan's rates
from a random generator seeded by (seed, request line + body, how many times that same request
was seen): the same chunk gets the same sequence of faults on every run, whatever the order in
which threads send it. Other requests pass untouched. Faults:

=============  ==========================================================================
``pass``       forwarded, the reply relayed unchanged
``delay``      forwarded after ``delay`` seconds (below the client's timeout)
``error``      not forwarded: a 500 with a Reductionist JSON error body, connection kept
``cut_body``   forwarded; the reply's headers and half its body are sent, then the connection closes
``cut_headers``  not forwarded: half a status line and header, then the connection closes
``empty_body`` forwarded; a 200 header without Content-Length, then the connection closes
``bad_cbor``   forwarded; a 200 whose Content-Length matches a body cut in half (well framed, not CBOR)
``slow``       not forwarded: nothing is sent until the client gives up (or ``slow`` seconds)
=============  ==========================================================================

``kill()`` makes the proxy a dead server: the listening socket and every connection close, and
later connections are refused. ``kill_after=N`` does it when the N-th ``/v2`` request arrives
(a server dying mid-run, without a test having to time anything).

Python: ``with FaultProxy("127.0.0.1:8080", rates={"error": 0.05}, seed=1) as proxy: proxy.url``;
``proxy.counts()``. Shell: ``python -m tests.servers.faultproxy UPSTREAM --error 0.05 --delay 0.02``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import select
import socket
import threading
from collections import Counter
from typing import Self
from urllib.parse import urlsplit

FAULTS = ("delay", "error", "cut_body", "cut_headers", "empty_body", "bad_cbor", "slow")
MAX_HEAD = 64 * 1024


class _Closed(Exception):
    """The other side closed the connection (or the proxy was killed)."""


class _Stream:
    """A socket with a read buffer: whole HTTP heads and bodies of known length."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        try:
            data = self.sock.recv(65536)
        except OSError as exc:
            raise _Closed from exc
        if not data:
            raise _Closed
        self.buf += data

    def message(self) -> tuple[bytes, bytes]:
        """(head including the blank line, body) of the next message (Content-Length framing)."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise _Closed
            self._fill()
        end = self.buf.index(b"\r\n\r\n") + 4
        head, self.buf = self.buf[:end], self.buf[end:]
        length = content_length(head)
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return head, body


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def without_length(head: bytes) -> bytes:
    """``head`` with its Content-Length dropped and ``Connection: close`` set."""
    lines = [
        line
        for line in head.rstrip(b"\r\n").split(b"\r\n")
        if line.partition(b":")[0].strip().lower() not in (b"content-length", b"connection")
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


def with_length(head: bytes, length: int) -> bytes:
    lines = [
        line
        for line in head.rstrip(b"\r\n").split(b"\r\n")
        if line.partition(b":")[0].strip().lower() != b"content-length"
    ]
    return b"\r\n".join([*lines, b"Content-Length: %d" % length]) + b"\r\n\r\n"


ERROR_BODY = json.dumps(
    {"error": {"message": "injected by the fault proxy", "caused_by": ["proxy fault: 500"]}}
).encode()
ERROR_REPLY = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(ERROR_BODY) + ERROR_BODY
)


class FaultProxy:
    """A threaded proxy to ``upstream`` (``host:port`` or a URL) that injects faults.

    Parameters
    ----------
    upstream : str
        Where requests go.
    rates : dict
        Probability of each fault (keys from ``FAULTS``); the rest pass.
    seed : int
        Seeds the choice of faults.
    delay : float
        Seconds a ``delay`` fault holds a request.
    slow : float
        Longest a ``slow`` fault holds a connection (the client is meant to give up first).
    kill_after : int, optional
        Die (``kill()``) when this many ``/v2`` requests have arrived.
    """

    def __init__(
        self,
        upstream: str,
        *,
        rates: dict[str, float] | None = None,
        seed: int = 0,
        delay: float = 0.02,
        slow: float = 30.0,
        kill_after: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        parts = urlsplit(upstream if "://" in upstream else f"http://{upstream}")
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        rates = dict(rates or {})
        unknown = set(rates) - set(FAULTS)
        if unknown or sum(rates.values()) > 1:
            raise ValueError(f"rates: unknown faults {unknown} or a total above 1")
        self.rates = rates
        self.seed = seed
        self.delay = delay
        self.slow = slow
        self.kill_after = kill_after
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._sockets: set[socket.socket] = set()
        self._stop = threading.Event()
        self._listener = socket.create_server((host, port))
        self.url = f"http://{host}:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, name="faultproxy", daemon=True)
        self._thread.start()

    # -- control ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Requests seen per fault (``pass`` included), and ``total``."""
        with self._lock:
            return {**self._counts, "total": sum(self._counts.values())}

    @property
    def killed(self) -> bool:
        return self._stop.is_set()

    def kill(self) -> None:
        """Stop listening and cut every connection: from now on the server is dead."""
        self._stop.set()
        with self._lock:
            sockets = [self._listener, *self._sockets]
            self._sockets.clear()
        for sock in sockets:
            _close(sock)

    def stop(self) -> None:
        self.kill()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._track(client):
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, sock: socket.socket) -> bool:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._stop.is_set():
                _close(sock)
                return False
            self._sockets.add(sock)
            return True

    def _choose(self, head: bytes, body: bytes) -> str:
        """The fault for this request: deterministic in (seed, request, repetition)."""
        key = hashlib.sha1(head.split(b"\r\n", 1)[0] + b"\n" + body).hexdigest()
        with self._lock:
            nth = self._seen[key]
            self._seen[key] += 1
        draw = random.Random(f"{self.seed}:{key}:{nth}").random()
        for fault in FAULTS:
            draw -= self.rates.get(fault, 0.0)
            if draw < 0:
                return fault
        return "pass"

    def _serve(self, client: socket.socket) -> None:
        upstream: _Stream | None = None
        reader = _Stream(client)
        try:
            while not self._stop.is_set():
                head, body = reader.message()
                fault = "pass"
                if head.startswith(b"POST /v2/"):
                    fault = self._choose(head, body)
                    with self._lock:
                        self._counts[fault] += 1
                        arrived = sum(self._counts.values())
                    if self.kill_after is not None and arrived >= self.kill_after:
                        self.kill()
                        return
                if fault == "error":
                    client.sendall(ERROR_REPLY)
                    continue
                if fault == "cut_headers":
                    client.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: appl")
                    return
                if fault == "slow":
                    self._hold(client)
                    return
                if fault == "delay" and self._stop.wait(self.delay):
                    return
                if upstream is None:
                    upstream = self._connect()
                upstream.sock.sendall(head + body)
                reply_head, reply_body = upstream.message()
                if fault == "cut_body":
                    client.sendall(reply_head + reply_body[: len(reply_body) // 2])
                    return
                if fault == "empty_body":
                    client.sendall(without_length(reply_head))
                    return
                if fault == "bad_cbor":
                    cut = reply_body[: len(reply_body) // 2]
                    client.sendall(with_length(reply_head, len(cut)) + cut)
                    continue
                client.sendall(reply_head + reply_body)
        except (_Closed, OSError):
            pass
        finally:
            self._untrack(client)
            if upstream is not None:
                self._untrack(upstream.sock)

    def _connect(self) -> _Stream:
        try:
            sock = socket.create_connection(self.upstream, timeout=10)
        except OSError as exc:
            raise _Closed from exc
        sock.settimeout(None)
        if not self._track(sock):
            raise _Closed
        return _Stream(sock)

    def _hold(self, client: socket.socket) -> None:
        """Send nothing until the client hangs up, the proxy dies or ``slow`` seconds pass
        (the wait is the fault: nothing in a test waits for it)."""
        remaining = self.slow
        while remaining > 0 and not self._stop.is_set():
            step = min(remaining, 0.25)
            readable, _, _ = select.select([client], [], [], step)
            remaining -= step
            if readable:
                try:
                    if not client.recv(65536):
                        return
                except OSError:
                    return

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def main(argv: list[str] | None = None) -> None:
    """Run a proxy in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", help="host:port or URL of the server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    for fault in FAULTS:
        parser.add_argument(f"--{fault.replace('_', '-')}", type=float, default=0.0, metavar="P")
    parser.add_argument("--delay-seconds", type=float, default=0.02)
    args = parser.parse_args(argv)
    rates = {f: getattr(args, f) for f in FAULTS if getattr(args, f)}
    proxy = FaultProxy(
        args.upstream, rates=rates, seed=args.seed, delay=args.delay_seconds, port=args.port
    )
    print(f"fault proxy on {proxy.url} -> {args.upstream}", flush=True)
    try:
        proxy._thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()


if __name__ == "__main__":
    main()
