"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1: a real TCP hop between a client and a server.

Each request whose request line starts with one of ``match`` (default ``POST /v2/``: the
Reductionist's requests; ``("GET ",)`` for data reads from S3 or HTTP) gets one fault, chosen
with the plan's rates from a random generator seeded by (seed, request line + range + body, how
many times that same request was seen): the same chunk gets the same sequence of faults on every
run, whatever the order in which threads send it. Other requests pass untouched. Faults:

=============  ==========================================================================
``pass``       forwarded, the reply relayed unchanged
``delay``      forwarded after ``delay`` seconds (below the client's timeout)
``error``      not forwarded: a 500 with a Reductionist JSON error body, connection kept
``cut_body``   forwarded; the reply's headers and half its body are sent, then the connection closes
``cut_headers``  not forwarded: half a status line and header, then the connection closes
``empty_body`` forwarded; a 200 header without Content-Length, then the connection closes
``bad_cbor``   forwarded; a 200 whose Content-Length matches a body cut in half (well framed, not CBOR)
``slow``       not forwarded: nothing is sent until the client gives up (or ``slow`` seconds)
``reset``      forwarded; the headers and half the body are sent, then a TCP reset (RST)
``short_body`` forwarded; a reply whose Content-Length matches a body cut in half
``stall_body`` forwarded; the headers and half the body are sent, then nothing (a stalled read)
``status``     not forwarded: the ``status`` reply (e.g. a 503 SlowDown with Retry-After), kept alive
``close_after``  forwarded and relayed whole (keep-alive headers kept), then the connection closes
``rewrite``    forwarded; ``rewrite(head, body) -> (head, body)`` changes the reply (framing redone)
``no_range``   forwarded without its ``Range`` header: the server answers with the whole object
``trickle``    forwarded; the headers, then the body one byte every ``trickle`` seconds
``trickle_head``  forwarded; the head one byte every ``trickle`` seconds, then the body at once
=============  ==========================================================================

``mode="tcp"`` relays bytes without reading HTTP (for TLS, which the proxy cannot read): each
connection gets ``pass``, ``reset`` (the first ``cut_bytes`` bytes of the reply, then a reset),
``slow`` (nothing relayed) or ``cut_body`` (the first ``cut_bytes`` bytes, then a clean close).

``kill()`` makes the proxy a dead server: the listening socket and every connection close, and
later connections are refused. ``kill_after=N`` does it when the N-th ``/v2`` request arrives
(a server dying mid-run, without a test having to time anything).

Python: ``with FaultProxy("127.0.0.1:8080", rates={"error": 0.05}, seed=1) as proxy: proxy.url``;
``proxy.counts()``. Shell: ``python -m tests.servers.faultproxy UPSTREAM --error 0.05 --delay 0.02``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import select
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Self
from urllib.parse import urlsplit

FAULTS = (
    "delay",
    "error",
    "cut_body",
    "cut_headers",
    "empty_body",
    "bad_cbor",
    "slow",
    "reset",
    "short_body",
    "stall_body",
    "status",
    "close_after",
    "rewrite",
    "no_range",
    "trickle",
    "trickle_head",
)
TCP_FAULTS = ("reset", "slow", "cut_body")
MAX_HEAD = 64 * 1024
NO_BODY_STATUSES = (b"204", b"304")


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

    def message(self, reply_to: bytes | None = None) -> tuple[bytes, bytes]:
        """(head including the blank line, body) of the next message.

        Requests are framed by Content-Length; a reply (``reply_to`` is its request's head)
        also by chunked transfer coding or the end of the connection, and a reply to HEAD
        (or a 204/304) has no body. A chunked body is returned decoded, its head rewritten to
        a Content-Length.
        """
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise _Closed
            self._fill()
        end = self.buf.index(b"\r\n\r\n") + 4
        head, self.buf = self.buf[:end], self.buf[end:]
        if reply_to is not None:
            status = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
            if reply_to.startswith(b"HEAD ") or status in NO_BODY_STATUSES:
                return head, b""
            if header(head, b"transfer-encoding").lower() == b"chunked":
                body = self._chunked()
                return with_length(drop_header(head, b"transfer-encoding"), len(body)), body
            if not header(head, b"content-length"):
                return head, self._until_closed()
        length = content_length(head)
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return head, body

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _chunked(self) -> bytes:
        body = b""
        while True:
            size = int(self._line().split(b";")[0], 16)
            if size == 0:
                while self._line():  # trailers up to the blank line
                    pass
                return body
            while len(self.buf) < size + 2:
                self._fill()
            body += self.buf[:size]
            self.buf = self.buf[size + 2 :]

    def _until_closed(self) -> bytes:
        try:
            while True:
                self._fill()
        except _Closed:
            body, self.buf = self.buf, b""
            return body


def header(head: bytes, name: bytes) -> bytes:
    """The value of header ``name`` (lower case) in ``head``, or b""."""
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return b""


def content_length(head: bytes) -> int:
    return int(header(head, b"content-length") or 0)


def drop_header(head: bytes, name: bytes) -> bytes:
    lines = [
        line
        for line in head.rstrip(b"\r\n").split(b"\r\n")
        if line.partition(b":")[0].strip().lower() != name
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


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
SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
SLOWDOWN_REPLY = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nRetry-After: 0\r\n"
    b"Content-Length: %d\r\n\r\n" % len(SLOWDOWN_BODY) + SLOWDOWN_BODY
)
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
        Probability of each fault (keys from ``FAULTS``, or ``TCP_FAULTS`` in tcp mode); the
        rest pass.
    seed : int
        Seeds the choice of faults.
    delay : float
        Seconds a ``delay`` fault holds a request.
    slow : float
        Longest a ``slow`` or ``stall_body`` fault holds a connection (the client is meant to
        give up first).
    kill_after : int, optional
        Die (``kill()``) when this many matching requests have arrived.
    match : tuple of bytes or str
        Request-line prefixes that get faults (default: the Reductionist's ``POST /v2/``).
    status : bytes, optional
        The whole reply a ``status`` fault sends (default: S3's 503 SlowDown with Retry-After).
    rewrite : callable, optional
        ``(head, body) -> (head, body)`` for the ``rewrite`` fault; Content-Length is redone.
    mode : {"http", "tcp"}
        Read HTTP messages (every fault) or relay bytes (``TCP_FAULTS`` per connection).
    cut_bytes : int
        Reply bytes a tcp-mode ``reset`` or ``cut_body`` relays before cutting.
    sequence : list of str, optional
        Faults of the first matching requests, in order of arrival (then ``rates`` decide):
        faults a test can count on, whatever the requests are.
    trickle : float
        Seconds between the bytes of a ``trickle`` reply (below the client's read timeout).
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
        match: tuple[bytes | str, ...] = (b"POST /v2/",),
        status: bytes | None = None,
        rewrite=None,
        mode: str = "http",
        cut_bytes: int = 2000,
        sequence: list[str] | None = None,
        trickle: float = 0.05,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        parts = urlsplit(upstream if "://" in upstream else f"http://{upstream}")
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        rates = dict(rates or {})
        known = TCP_FAULTS if mode == "tcp" else FAULTS
        unknown = set(rates) - set(known)
        if unknown or sum(rates.values()) > 1 or mode not in ("http", "tcp"):
            raise ValueError(f"rates: unknown faults {unknown} or a total above 1, or mode")
        self.rates = rates
        self.seed = seed
        self.delay = delay
        self.slow = slow
        self.kill_after = kill_after
        self.match = tuple(m.encode() if isinstance(m, str) else m for m in match)
        self.status = status or SLOWDOWN_REPLY
        self.rewrite = rewrite
        self.mode = mode
        self.cut_bytes = cut_bytes
        self.sequence = list(sequence or [])
        self.trickle = trickle
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._sockets: set[socket.socket] = set()
        self._stop = threading.Event()
        self._listener = socket.create_server((host, port))
        self.url = f"http://{host}:{self._listener.getsockname()[1]}"
        self.netloc = f"{host}:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, name="faultproxy", daemon=True)
        self._thread.start()

    # -- control ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Requests (tcp mode: connections) seen per fault (``pass`` included), and ``total``."""
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
        serve = self._relay if self.mode == "tcp" else self._serve
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._track(client):
                return
            threading.Thread(target=serve, args=(client,), daemon=True).start()

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
        line = head.split(b"\r\n", 1)[0] + b" " + header(head, b"range")
        key = hashlib.sha1(line + b"\n" + body).hexdigest()
        with self._lock:
            if self.sequence:
                return self.sequence.pop(0)
            nth = self._seen[key]
            self._seen[key] += 1
        draw = random.Random(f"{self.seed}:{key}:{nth}").random()
        for fault in FAULTS if self.mode == "http" else TCP_FAULTS:
            draw -= self.rates.get(fault, 0.0)
            if draw < 0:
                return fault
        return "pass"

    def _count(self, fault: str) -> bool:
        """Count a matching request; True when it kills the proxy (``kill_after``)."""
        with self._lock:
            self._counts[fault] += 1
            arrived = sum(self._counts.values())
        if self.kill_after is not None and arrived >= self.kill_after:
            self.kill()
            return True
        return False

    def _serve(self, client: socket.socket) -> None:
        upstream: _Stream | None = None
        reader = _Stream(client)
        try:
            while not self._stop.is_set():
                head, body = reader.message()
                fault = "pass"
                if head.startswith(self.match):
                    fault = self._choose(head, body)
                    if self._count(fault):
                        return
                if fault in ("error", "status"):
                    client.sendall(ERROR_REPLY if fault == "error" else self.status)
                    continue
                if fault == "cut_headers":
                    client.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: appl")
                    return
                if fault == "slow":
                    self._hold(client)
                    return
                if fault == "delay" and self._stop.wait(self.delay):
                    return
                if fault == "no_range":
                    head = drop_header(head, b"range")
                if upstream is None:
                    upstream = self._connect()
                upstream.sock.sendall(head + body)
                reply_head, reply_body = upstream.message(reply_to=head)
                if not self._reply(client, fault, reply_head, reply_body):
                    return
        except (_Closed, OSError):
            pass
        finally:
            self._untrack(client)
            if upstream is not None:
                self._untrack(upstream.sock)

    def _reply(self, client: socket.socket, fault: str, head: bytes, body: bytes) -> bool:
        """Send the upstream reply with ``fault`` applied; False when the connection ends."""
        half = body[: len(body) // 2]
        if fault == "cut_body":
            client.sendall(head + half)
            return False
        if fault == "empty_body":
            client.sendall(without_length(head))
            return False
        if fault in ("bad_cbor", "short_body"):
            client.sendall(with_length(head, len(half)) + half)
            return True
        if fault == "reset":
            client.sendall(head + half)
            _reset(client)
            return False
        if fault == "stall_body":
            client.sendall(head + half)
            self._hold(client)
            return False
        if fault in ("trickle", "trickle_head"):
            slowly, at_once = (head, body) if fault == "trickle_head" else (body, b"")
            client.sendall(b"" if fault == "trickle_head" else head)
            for i in range(len(slowly)):  # until the client gives up (a send then fails)
                if self._stop.wait(self.trickle):
                    return False
                client.sendall(slowly[i : i + 1])
            client.sendall(at_once)
            return True
        if fault == "rewrite" and self.rewrite is not None:
            head, body = self.rewrite(head, body)
            client.sendall(with_length(head, len(body)) + body)
            return True
        client.sendall(head + body)
        return fault != "close_after"

    def _relay(self, client: socket.socket) -> None:
        """tcp mode: relay bytes both ways, one fault per connection."""
        fault = self._choose(b"connection", str(self._seen["connection"]).encode())
        if self._count(fault):
            return
        upstream = None
        try:
            if fault == "slow":
                self._hold(client)
                return
            upstream = self._connect().sock
            sent = 0
            while not self._stop.is_set():
                readable, _, _ = select.select([client, upstream], [], [], 0.25)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        upstream.sendall(data)
                        continue
                    if fault != "pass" and sent + len(data) >= self.cut_bytes:
                        client.sendall(data[: self.cut_bytes - sent])
                        if fault == "reset":
                            _reset(client)
                        return
                    client.sendall(data)
                    sent += len(data)
        except (_Closed, OSError):
            pass
        finally:
            self._untrack(client)
            if upstream is not None:
                self._untrack(upstream)

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


@contextlib.contextmanager
def proxy_maker(target: str, **fixed) -> Iterator[Callable[..., FaultProxy]]:
    """A factory of ``FaultProxy(target, **fixed, **options)`` for a test; every proxy it made
    is stopped when the block ends."""
    made: list[FaultProxy] = []

    def make(**options) -> FaultProxy:
        made.append(FaultProxy(target, **fixed, **options))
        return made[-1]

    try:
        yield make
    finally:
        for proxy in made:
            proxy.stop()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (RST) instead of an orderly FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


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
    parser.add_argument("--match", action="append", help="request-line prefix (default POST /v2/)")
    args = parser.parse_args(argv)
    rates = {f: getattr(args, f) for f in FAULTS if getattr(args, f)}
    proxy = FaultProxy(
        args.upstream,
        rates=rates,
        seed=args.seed,
        delay=args.delay_seconds,
        port=args.port,
        match=tuple(args.match or ("POST /v2/",)),
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
