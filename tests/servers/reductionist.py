"""A Reductionist-v2-compatible HTTP server for tests, with request statistics and fault injection.

Endpoints: ``POST /v2/{count,min,max,sum,select}`` as in the reference spec (JSON in, CBOR out,
HTTP Basic auth passed on as S3 key/secret or to the HTTP source), plus test controls:
``GET /stats``, ``POST /stats/reset``, ``GET /faults`` and ``POST /faults`` with
``{"fail_next": N, "status": 500}``, ``{"drop_next": N}`` or ``{"delay_next": N, "delay": s}``
(``{"clear": true}`` cancels pending faults). Faults apply to ``/v2/...`` requests only.

Python: ``handle = start_reductionist()``; ``handle.url``, ``handle.stats()``, ``handle.inject(...)``,
``handle.stop()``. Shell: ``python -m tests.servers.reductionist --port 8080``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import ssl
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import cbor2

from .reductionist_pipeline import Sources, run
from .reductionist_validate import OPERATIONS, ApiError, parse_request

log = logging.getLogger(__name__)


class Stats:
    """Thread-safe request counters: per operation, per status, and per (operation, status)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._ops: dict[str, int] = defaultdict(int)
            self._statuses: dict[str, int] = defaultdict(int)
            self._by_op: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def record(self, operation: str, status: int | str) -> None:
        with self._lock:
            self._total += 1
            self._ops[operation] += 1
            self._statuses[str(status)] += 1
            self._by_op[operation][str(status)] += 1

    def snapshot(self) -> dict:
        """A JSON-ready copy: {"total", "operations", "statuses", "by_operation"}."""
        with self._lock:
            return {
                "total": self._total,
                "operations": dict(self._ops),
                "statuses": dict(self._statuses),
                "by_operation": {op: dict(st) for op, st in self._by_op.items()},
            }


class Faults:
    """Pending injected faults, consumed one per ``/v2`` request (drop, then fail, then delay)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self.fail_next, self.status, self.drop_next = 0, 500, 0
            self.delay_next, self.delay = 0, 0.0

    def update(self, spec: dict) -> None:
        """Apply a /faults JSON document (unknown keys raise KeyError, changing nothing)."""
        values = {key: _FAULT_KEYS[key](value) for key, value in spec.items() if key != "clear"}
        if spec.get("clear"):
            self.clear()
        with self._lock:
            for key, value in values.items():
                setattr(self, key, value)

    def take(self) -> tuple[str, float] | None:
        """Consume the next fault: ("drop", 0), ("fail", status), ("delay", seconds) or None."""
        with self._lock:
            for kind, counter, value in _FAULT_ORDER:
                if getattr(self, counter) > 0:
                    setattr(self, counter, getattr(self, counter) - 1)
                    return kind, getattr(self, value) if value else 0
        return None

    def snapshot(self) -> dict:
        with self._lock:
            return {key: getattr(self, key) for key in _FAULT_KEYS}


_FAULT_KEYS = {"fail_next": int, "status": int, "drop_next": int, "delay_next": int, "delay": float}
_FAULT_ORDER = (
    ("drop", "drop_next", None),
    ("fail", "fail_next", "status"),
    ("delay", "delay_next", "delay"),
)


class ReductionistServer(ThreadingHTTPServer):
    """The HTTP server; holds the Stats, Faults and data Sources shared by handler threads."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, *, https_verify=None, ssl_context=None):
        super().__init__(address, Handler)
        self.stats = Stats()
        self.faults = Faults()
        self.sources = Sources(https_verify)
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def handle_error(self, request, client_address) -> None:
        log.debug("connection from %s failed: %r", client_address, sys.exc_info()[1])


class Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # headers and body go in two sends: no 40 ms stall
    """Routes /v2 operations and the test-control endpoints."""

    protocol_version = "HTTP/1.1"
    server: ReductionistServer

    def log_message(self, format, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        path = self._path()
        if path == "/stats":
            return self._send_json(200, self.server.stats.snapshot())
        if path == "/faults":
            return self._send_json(200, self.server.faults.snapshot())
        if path == "/.well-known/reductionist-schema":
            return self._send(200, "text/plain", b"Hello, world!")
        status = 405 if path.startswith("/v2/") else 404
        self._send_error(ApiError(status, "method not allowed" if status == 405 else "not found"))

    def do_POST(self) -> None:
        body, path = self._read_body(), self._path()
        if path.startswith("/v2/"):
            return self._operation(path[len("/v2/") :], body)
        if path == "/stats/reset":
            self.server.stats.reset()
            return self._send_json(200, self.server.stats.snapshot())
        if path == "/faults":
            return self._set_faults(body)
        self._send_error(ApiError(404, "not found"))

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _set_faults(self, body: bytes) -> None:
        try:
            self.server.faults.update(json.loads(body or b"{}"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return self._send_error(ApiError(400, "invalid fault specification", [repr(exc)]))
        self._send_json(200, self.server.faults.snapshot())

    def _operation(self, operation: str, body: bytes) -> None:
        fault = self.server.faults.take()
        if fault and fault[0] == "drop":
            self.server.stats.record(operation, "dropped")
            self.close_connection = True
            return
        if fault and fault[0] == "delay":
            time.sleep(fault[1])
        if fault and fault[0] == "fail":
            error = ApiError(int(fault[1]), "injected fault", [f"fault injection: {fault[1]}"])
            reply = _error_reply(error)
        else:
            reply = self._answer(operation, body)
        self.server.stats.record(operation, reply[0])  # before answering: clients see it counted
        self._send(*reply)

    def _answer(self, operation: str, body: bytes) -> tuple[int, str, bytes]:
        try:
            result = self._execute(operation, body)
        except ApiError as exc:
            return _error_reply(exc)
        except Exception as exc:  # any other failure is a 500, as in Reductionist
            log.debug("request failed", exc_info=True)
            return _error_reply(ApiError(500, "internal error", [f"{type(exc).__name__}"]))
        return 200, "application/cbor", cbor2.dumps(result)

    def _execute(self, operation: str, body: bytes) -> dict:
        if operation not in OPERATIONS:
            raise ApiError(404, f"unsupported operation {operation}")
        request = parse_request(body, self.headers.get("Content-Type"))
        return run(operation, request, self._basic_auth(), self.server.sources)

    def _basic_auth(self) -> tuple[str, str] | None:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(400, "invalid Authorization header") from None
        return user, password

    def _send_error(self, error: ApiError) -> int:
        return self._send(*_error_reply(error))

    def _send_json(self, status: int, document: dict) -> int:
        return self._send(status, "application/json", json.dumps(document).encode())

    def _send(self, status: int, content_type: str, payload: bytes) -> int:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        return status


def _error_reply(error: ApiError) -> tuple[int, str, bytes]:
    return error.status, "application/json", json.dumps(error.body()).encode()


@dataclass
class ReductionistHandle:
    """A server running in a background thread."""

    server: ReductionistServer
    thread: threading.Thread
    url: str

    def stats(self) -> dict:
        return self.server.stats.snapshot()

    def reset_stats(self) -> None:
        self.server.stats.reset()

    def inject(self, fail_next: int = 0, status: int = 500, drop_next: int = 0, **more) -> None:
        """Replace the pending faults for the next /v2 requests (more: delay_next=, delay=)."""
        self.server.faults.update(
            {"fail_next": fail_next, "status": status, "drop_next": drop_next, **more}
        )

    def clear_faults(self) -> None:
        self.server.faults.clear()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_reductionist(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    https_verify=None,
) -> ReductionistHandle:
    """Start a server in a daemon thread; https_verify is the CA bundle (or False) for https sources."""
    context = _tls_context(tls_cert, tls_key)
    server = ReductionistServer((host, port), https_verify=https_verify, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, name="reductionist", daemon=True)
    thread.start()
    scheme = "https" if context else "http"
    return ReductionistHandle(server, thread, f"{scheme}://{host}:{server.server_address[1]}")


def _tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def main(argv: list[str] | None = None) -> None:
    """Run the server in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--https-verify", help="CA bundle for https sources")
    args = parser.parse_args(argv)
    context = _tls_context(args.tls_cert, args.tls_key)
    server = ReductionistServer(
        (args.host, args.port), https_verify=args.https_verify, ssl_context=context
    )
    print(f"Reductionist test server on {args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
