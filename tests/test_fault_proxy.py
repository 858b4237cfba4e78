"""Reductions through a real TCP proxy that fails, cuts and delays Reductionist replies.

The proxy (``tests/servers/faultproxy.py``) sits between the client and the project's
Reductionist test server, which reads a many-chunk file from moto S3. Every fault a network or a
crashing server produces reaches the client as bytes on a socket: 500s, connections closed in the
headers or mid-body, 200s without a whole CBOR body, replies slower than the timeout, a server
that dies mid-run. Answers must equal the netCDF4 oracle, or the run must end in one
``ReductionistError``. Faults are chosen per request from a seed, so each run sees the same ones.
No test sleeps or times anything: the waits are the faults themselves.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import cbor2
import numpy as np
import pytest
import requests

from activezarr import Active, build_index
from activezarr.backends.breaker import CircuitBreaker
from activezarr.errors import ReductionistError
from tests.generate import temperatures, write_variable
from tests.oracle import assert_same, oracle_read, reduce_masked
from tests.servers.faultproxy import FaultProxy, proxy_maker

VAR = "tas"
SHAPE, CHUNKS = (20, 40, 50), (2, 4, 5)  # 1,000 chunks of 40 values
NCHUNKS = 1000
FILL = np.float32(1e20)
# (operation, axis, selection, chunks it touches)
RUNS = [
    ("mean", None, Ellipsis, NCHUNKS),
    ("sum", (1, 2), (slice(1, 19), slice(3, 37), slice(2, 48)), 1000),
    ("min", None, (slice(0, 20, 3), slice(None), slice(10, 50)), 560),
]
RUN_CHUNKS = sum(r[3] for r in RUNS)
# per attempt: the issue's mix (5% 500s, 3% closed mid-reply, 2% slower than the timeout)
ISSUE_RATES = {"error": 0.05, "cut_body": 0.03, "slow": 0.02}
FAILURES = ("error", "cut_body", "cut_headers", "empty_body", "bad_cbor", "slow")
CLIENT = {"timeout": 2.0, "retries": 5, "backoff": 0.01}


@pytest.fixture(scope="module")
def many_chunks(remote_data, tmp_path_factory) -> tuple[Path, Path, dict]:
    """(local copy, index of the S3 copy, storage options) of a 1,000-chunk float32 file."""
    path = tmp_path_factory.mktemp("faults") / "many_chunks.nc"
    data = temperatures("many_chunks", SHAPE, FILL)
    write_variable(path, data, name=VAR, fill_value=FILL, chunks=CHUNKS, zlib=True, shuffle=True)
    store = remote_data.store
    url = store.upload(f"faults/{path.name}", path)
    so = store.storage_options()
    index = build_index(url, out=tmp_path_factory.mktemp("fault-index"), storage_options=so)
    return path, index, so


@pytest.fixture
def proxy_for(reductionist_server):
    """Make a FaultProxy in front of the Reductionist test server; stopped after the test."""
    with proxy_maker(reductionist_server.url) as make:
        yield make


def active_via(proxy: FaultProxy, many_chunks, **options) -> Active:
    _, index, so = many_chunks
    options = {**CLIENT, "breaker": CircuitBreaker(), **options}
    return Active(
        index, VAR, backend="reductionist", server=proxy.url, storage_options=so, **options
    )


def check_runs(active: Active, many_chunks, runs=RUNS) -> int:
    """Every run of ``runs`` equals the oracle; returns the chunks they touched."""
    path = many_chunks[0]
    touched = 0
    for op, axis, selection, nchunks in runs:
        result = getattr(active, op)(axis=axis)[selection]
        data = oracle_read(path, VAR, selection)
        assert_same(result, reduce_masked(data, op, axis), op, rtol=2e-5, where=f"{op} {axis}")
        stats = active.stats
        assert stats.chunks_remote + stats.chunks_local == nchunks, stats
        touched += nchunks
    return touched


def failed_attempts(proxy: FaultProxy) -> int:
    counts = proxy.counts()
    return sum(counts.get(kind, 0) for kind in FAILURES)


# ------------------------------------------------------------------------- faults retried
def test_issue_fault_mix_gives_exact_answers(proxy_for, many_chunks):
    """5% 500s, 3% connections closed mid-reply, 2% replies slower than the timeout, over
    2,560 chunk reductions: every answer equals the oracle, every chunk from the server."""
    proxy = proxy_for(rates=ISSUE_RATES, seed=10)
    retries = 0
    with active_via(proxy, many_chunks) as active:
        for run in RUNS:
            check_runs(active, many_chunks, [run])
            stats = active.stats
            assert (stats.chunks_local, stats.breaker_trips) == (0, 0), stats
            retries += stats.retries
    counts = proxy.counts()
    assert all(counts.get(kind, 0) > 10 for kind in ISSUE_RATES), counts
    # each failed attempt was retried (a spurious timeout under load adds a retry, no more)
    assert retries >= failed_attempts(proxy)
    assert counts["total"] == RUN_CHUNKS + retries


def test_malformed_replies_are_retried(proxy_for, many_chunks):
    """Replies cut in the headers, 200s with no body, 200s whose body is half a CBOR map."""
    rates = {"cut_headers": 0.04, "empty_body": 0.04, "bad_cbor": 0.04, "delay": 0.05}
    proxy = proxy_for(rates=rates, seed=11, delay=0.01)
    with active_via(proxy, many_chunks) as active:
        check_runs(active, many_chunks, RUNS[:1])
        assert active.stats.chunks_local == 0
    counts = proxy.counts()
    assert all(counts.get(kind, 0) > 10 for kind in rates), counts


# ----------------------------------------------------------------- retries exhausted
ONE = (slice(0, 2), slice(0, 4), slice(0, 5))


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("error", "answered 500: injected by the fault proxy"),
        ("cut_body", "cut off mid-body"),
        # http.client takes what came as headers: a truncated Content-Type, no body
        ("cut_headers", "bad body: Content-Type 'appl'"),
        ("empty_body", "bad body: empty reply"),
        ("bad_cbor", "bad body: not a whole CBOR document"),
        ("slow", "no reply within 1 s"),
    ],
)
def test_exhausted_retries_raise_one_reductionist_error(proxy_for, many_chunks, fault, says):
    """A fault on every attempt: one ReductionistError naming server, chunk and what went
    wrong (never a raw requests/cbor2 exception); with fallback="local" the right answer."""
    proxy = proxy_for(rates={fault: 1.0})
    # only the slow fault is about the timeout: the others get time to be answered on a busy
    # machine (a 1 s timeout turned a bad CBOR reply into a ReadTimeout once in CI)
    options = {"retries": 2, "timeout": 1.0 if fault == "slow" else 30.0}
    with (
        active_via(proxy, many_chunks, **options) as active,
        pytest.raises(ReductionistError) as info,
    ):
        active.mean[ONE]
    message = str(info.value)
    assert says in message and proxy.url in message and "after 3 attempt(s)" in message
    assert "/faults/many_chunks.nc bytes " in message  # the chunk
    assert info.value.server == proxy.url
    assert info.value.status == (500 if fault == "error" else None)
    assert proxy.counts()[fault] == 3
    with active_via(proxy, many_chunks, fallback="local", **options) as active:
        check_runs(active, many_chunks, [("mean", None, ONE, 1)])
        stats = active.stats
    assert (stats.chunks_remote, stats.chunks_local, len(stats.fallbacks)) == (0, 1, 1)
    assert says in stats.fallbacks[0]


def test_cause_is_kept(proxy_for, many_chunks):
    proxy = proxy_for(rates={"cut_body": 1.0})
    with (
        active_via(proxy, many_chunks, retries=0) as active,
        pytest.raises(ReductionistError) as info,
    ):
        active.mean[ONE]
    assert isinstance(info.value.__cause__, requests.exceptions.ChunkedEncodingError)


# ------------------------------------------------------------------- a server that dies
def test_server_killed_mid_run_falls_back(proxy_for, many_chunks):
    """The server dies after 300 requests (connections cut, later ones refused): the answer
    is still right, the breaker opens, and the rest of the chunks never ask the server."""
    proxy = proxy_for(kill_after=300)
    breaker = CircuitBreaker()
    with active_via(proxy, many_chunks, fallback="local", breaker=breaker) as active:
        check_runs(active, many_chunks, RUNS[:1])
        stats = active.stats
    assert proxy.killed and breaker.is_open()
    assert stats.breaker_trips == 1 and stats.chunks_breaker > 0
    assert 0 < stats.chunks_remote < 300 and stats.chunks_local == NCHUNKS - stats.chunks_remote
    # after the kill: the requests in flight when it came (their late successes may restart the
    # count), the breaker's threshold of failures in a row, and those in flight when it opened
    failed = stats.requests - stats.chunks_remote
    assert failed <= breaker.threshold + 2 * active.backend.in_flight.maximum, stats


def test_dead_server_goes_local_at_once(proxy_for, many_chunks):
    """Dead from the start: a handful of refused connections, then every chunk is local; the
    next reduction does not ask the server at all (local batches, no per-chunk requests)."""
    proxy = proxy_for()
    proxy.kill()
    breaker = CircuitBreaker()
    with active_via(proxy, many_chunks, fallback="local", breaker=breaker) as active:
        check_runs(active, many_chunks, RUNS[:1])
        first = active.stats
        check_runs(active, many_chunks, RUNS[1:2])
        second = active.stats
    assert first.chunks_local == NCHUNKS and first.breaker_trips == 1
    assert first.requests <= breaker.threshold + active.backend.in_flight.maximum
    assert first.chunks_breaker >= NCHUNKS - first.requests
    assert second.requests == 0 and second.chunks_breaker == NCHUNKS


def test_dead_server_without_fallback_fails_fast(proxy_for, many_chunks):
    proxy = proxy_for()
    proxy.kill()
    with (
        active_via(proxy, many_chunks, retries=1, backoff=0.0) as active,
        pytest.raises(ReductionistError, match="connection refused|circuit breaker") as info,
    ):
        active.mean[...]
    assert proxy.url in str(info.value)
    backend = active.backend
    assert active.stats.requests <= backend.breaker.threshold + 2 * backend.in_flight.maximum


# ------------------------------------------------- replies a server or a proxy gets wrong
def _cbor_rewrite(change):
    """A ``rewrite`` fault: the CBOR reply map changed by ``change(reply)``."""

    def rewrite(head: bytes, body: bytes) -> tuple[bytes, bytes]:
        if not head.startswith(b"HTTP/1.1 200"):
            return head, body
        reply = cbor2.loads(body)
        change(reply)
        return head, cbor2.dumps(reply)

    return rewrite


def _html(head: bytes, body: bytes) -> tuple[bytes, bytes]:
    head = head.replace(b"application/cbor", b"text/html; charset=utf-8")
    return head, b"<html><body>Please log in to the proxy</body></html>"


def _gzipped(head: bytes, body: bytes) -> tuple[bytes, bytes]:
    return head.replace(b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\n\r\n"), gzip.compress(body)


def _gzip_bomb(head: bytes, body: bytes) -> tuple[bytes, bytes]:
    return _gzipped(head, bytes(64 * 2**20))


def _another_shape(reply: dict) -> None:
    reply["shape"] = [2]
    reply["bytes"] = reply["bytes"] * 2
    reply["count"] = reply["count"] * 2


WRONG_REPLIES = {
    "html page": (_html, "Content-Type 'text/html"),
    "dtype": (_cbor_rewrite(lambda r: r.update(dtype="int64")), "dtype 'int64'"),
    "shape": (_cbor_rewrite(_another_shape), "shape [2], expected []"),
    "count": (_cbor_rewrite(lambda r: r.update(count=[1, 2])), "'count' does not hold 1"),
    "bytes": (_cbor_rewrite(lambda r: r.update(bytes=r["bytes"][:2])), "'bytes' holds 2"),
    "not a map": (lambda h, b: (h, cbor2.dumps([1, 2, 3])), "not a map"),
    "gzip bomb": (_gzip_bomb, "larger than"),
}


@pytest.mark.parametrize("case", sorted(WRONG_REPLIES))
def test_wrong_replies_are_never_used(proxy_for, many_chunks, case):
    """A 200 that is an HTML page, a CBOR map of another dtype, shape or count, or a gzip
    bomb: retried, then one ReductionistError saying what was wrong; with fallback the
    chunk is reduced here and the answer is right."""
    rewrite, says = WRONG_REPLIES[case]
    proxy = proxy_for(rates={"rewrite": 1.0}, rewrite=rewrite)
    options = {"retries": 1, "timeout": 30.0}  # a gzip bomb takes the proxy > 2 s under load
    with (
        active_via(proxy, many_chunks, **options) as active,
        pytest.raises(ReductionistError, match="bad body") as info,
    ):
        active.mean[ONE]
    assert says in str(info.value), info.value
    with active_via(proxy, many_chunks, fallback="local", **options) as active:
        check_runs(active, many_chunks, [("mean", None, ONE, 1)])
        assert active.stats.chunks_local == 1


def test_gzip_encoded_replies_are_read(proxy_for, many_chunks):
    proxy = proxy_for(rates={"rewrite": 1.0}, rewrite=_gzipped)
    with active_via(proxy, many_chunks) as active:
        check_runs(active, many_chunks, [("sum", (1, 2), (slice(0, 4), slice(0, 8), ...), 40)])
        assert active.stats.chunks_local == 0 and active.stats.retries == 0


def test_keep_alive_closed_after_every_reply(proxy_for, many_chunks):
    """The server closes each kept-alive connection after its reply (without saying so):
    the next request on it fails or finds it closed, and is sent again; answers exact."""
    proxy = proxy_for(rates={"close_after": 1.0})
    with active_via(proxy, many_chunks) as active:
        check_runs(active, many_chunks, [SOME])
        assert active.stats.chunks_local == 0
    assert proxy.counts()["close_after"] >= SOME[3]


SOME = ("mean", None, (slice(0, 4), slice(0, 20), slice(None)), 100)  # 100 chunks


def _status_reply(status: bytes, headers: bytes = b"") -> bytes:
    body = b'{"error": {"message": "busy", "caused_by": []}}'
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n" + headers
        + b"Content-Length: %d\r\n\r\n" % len(body) + body
    )  # fmt: skip


@pytest.mark.parametrize("status", [b"429 Too Many Requests", b"503 Service Unavailable"])
def test_busy_with_retry_after(proxy_for, many_chunks, status, monkeypatch):
    """429/503 with Retry-After: retried after at least what the server asked (capped by
    retry_after_max); when every attempt is refused, one error with the status."""
    from activezarr.backends import reductionist as module

    waits = []
    real_sleep = module.time.sleep
    monkeypatch.setattr(module.time, "sleep", lambda s: (waits.append(s), real_sleep(0)))
    reply = _status_reply(status, b"Retry-After: 3\r\n")
    proxy = proxy_for(rates={"status": 0.15}, status=reply, seed=4)
    with active_via(proxy, many_chunks, retry_after_max=0.5) as active:
        check_runs(active, many_chunks, [SOME])
    # every refused request waited what the server asked, capped (not 3 s); other waits are
    # the jittered backoff of failures a loaded machine adds (a timeout), not of this fault
    refused = proxy.counts()["status"]
    assert refused > 5 and sum(w >= 0.5 for w in waits) >= refused and max(waits) < 3
    always = proxy_for(rates={"status": 1.0}, status=reply)
    with (
        active_via(always, many_chunks, retries=1, retry_after_max=0.0) as active,
        pytest.raises(ReductionistError, match=status[:3].decode()) as info,
    ):
        active.mean[ONE]
    assert info.value.status == int(status[:3])


def test_redirects_are_not_followed(proxy_for, many_chunks, reductionist_server):
    """A 307 to another host: not followed (the request carries the S3 credentials as Basic
    auth), one ReductionistError naming the target; the other host never hears of it."""
    elsewhere = proxy_for()  # a second server that counts what reaches it
    target = f"{elsewhere.url}/v2/sum/".encode()
    reply = (
        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: " + target + b"\r\nContent-Length: 0\r\n\r\n"
    )
    proxy = proxy_for(rates={"status": 1.0}, status=reply)
    with (
        active_via(proxy, many_chunks, fallback="local") as active,
        pytest.raises(ReductionistError, match="redirects are not followed") as info,
    ):
        active.mean[ONE]
    assert elsewhere.url in str(info.value) and info.value.status == 307
    assert elsewhere.counts()["total"] == 0 and proxy.counts()["status"] == 1
