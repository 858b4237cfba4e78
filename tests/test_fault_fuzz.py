"""A fault fuzzer over the classes the other fault tests do not draw from: Reductionist replies
of the right framing but the wrong content (every field of the CBOR map replaced by junk or
dropped, counts no cell can hold, the v1 headers lying beside a right body), 5xx storms with
and without ``Retry-After``, data reads through moto and nginx that mix resets, bodies cut
under a correct ``Content-Length``, replies that stall before their headers, servers that
ignore ranges and replies that trickle, TLS streams cut during the handshake, and hosts
that do not resolve.

The contract, whatever is drawn: the exact answer (the netCDF4 oracle), or one
``ActiveZarrError`` on one line naming the file, variable or server — never a wrong answer,
never another exception, never a hang (every wait ends at a timeout or deadline the test
sets), never the credentials. No test sleeps or times anything.
"""

# ruff: noqa: F811  (pytest fixtures imported by name)
from __future__ import annotations

import json
import math
from pathlib import Path

import cbor2
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from activezarr import Active
from activezarr.errors import ActiveZarrError, ChunkReadError, ReductionistError
from tests.oracle import assert_same, oracle_read, reduce_masked
from tests.servers.faultproxy import FaultProxy
from tests.test_data_faults import data_file, on_https, on_s3, s3_proxy, via  # noqa: F401
from tests.test_fault_proxy import ONE, VAR, active_via, many_chunks, proxy_for  # noqa: F401
from tests.test_read_limits import limits_file, plain_nginx  # noqa: F401

FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CELL = math.prod(s.stop - s.start for s in ONE)  # values one cell of `mean[ONE]` sums
DROP = object()
JUNK = st.one_of(
    st.just(DROP),
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.binary(max_size=24),
    st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=2), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
# counts no cell of `mean[ONE]` can hold: below zero or above the values it reduces
IMPOSSIBLE_COUNT = st.one_of(st.integers(-(2**63), -1), st.integers(CELL + 1, 2**63 - 1))


def _mutate(field: str, value):
    def rewrite(head: bytes, body: bytes) -> tuple[bytes, bytes]:
        if not head.startswith(b"HTTP/1.1 200"):
            return head, body
        reply = cbor2.loads(body)
        if value is DROP:
            reply.pop(field, None)
        else:
            reply[field] = value
        return head, cbor2.dumps(reply)

    return rewrite


def _undetectable(field: str, value) -> bool:
    """A lie of the right type, length and range (another sum, a count the cell could hold,
    "big" over little-endian bytes): the server's word, which no client can check."""
    if field == "byte_order":
        return value == "big"
    if field == "bytes" or field == "count_as_bytes":
        return isinstance(value, bytes) and len(value) == (4 if field == "bytes" else 8)
    if field == "count":
        return (
            isinstance(value, list)
            and len(value) == 1
            and type(value[0]) is int
            and 0 <= value[0] <= CELL
        )
    return False


def _reduce_one(proxy, many_chunks, **options):
    """``mean[ONE]`` through ``proxy``: (the answer, None) or (None, the error)."""
    try:
        with active_via(proxy, many_chunks, retries=1, backoff=0.001, **options) as active:
            return active.mean[ONE], None
    except ActiveZarrError as exc:
        return None, exc


def _exact(result, many_chunks) -> None:
    expected = reduce_masked(oracle_read(many_chunks[0], VAR, ONE), "mean", None)
    assert_same(result, expected, "mean", rtol=2e-5, where="mean[ONE]")


def _exact_or_one_error(proxy, many_chunks, says: str = "") -> None:
    """``mean[ONE]`` through ``proxy`` is exact, or one ReductionistError naming the server
    (and ``says``)."""
    result, error = _reduce_one(proxy, many_chunks)
    if error is None:
        _exact(result, many_chunks)
        return
    assert isinstance(error, ReductionistError), repr(error)
    _one_line(error, proxy.url)
    assert says in str(error), error


def _one_line(exc: ActiveZarrError, *names: str) -> None:
    message = str(exc)
    assert "\n" not in message and any(n in message for n in names), message


# ------------------------------------------------------------- Reductionist reply contents
@FUZZ
@given(
    field=st.sampled_from(
        ["dtype", "shape", "bytes", "count", "count_as_bytes", "byte_order", "extra"]
    ),
    value=JUNK,
)
def test_reply_fields_replaced_by_junk(proxy_for, many_chunks, field, value):
    """Any field of the reply map replaced by any value (or dropped): the exact answer (the
    change did not matter: an extra key, a right value) or one ReductionistError naming the
    server; with fallback="local" always the exact answer. (Lies no client can see are not
    drawn: see ``_undetectable``.)"""
    assume(not _undetectable(field, value))
    proxy = proxy_for(rates={"rewrite": 1.0}, rewrite=_mutate(field, value))
    _exact_or_one_error(proxy, many_chunks)
    result, error = _reduce_one(proxy, many_chunks, fallback="local")
    assert error is None, error
    _exact(result, many_chunks)


@FUZZ
@given(count=IMPOSSIBLE_COUNT, as_bytes=st.booleans())
def test_counts_no_cell_can_hold_are_refused(proxy_for, many_chunks, count, as_bytes):
    """A count below zero or above the number of values the cell reduces (as a list or as
    ``count_as_bytes``): never divided by, one ReductionistError."""

    def rewrite(head: bytes, body: bytes) -> tuple[bytes, bytes]:
        reply = cbor2.loads(body)
        if as_bytes:
            reply.pop("count", None)
            reply["count_as_bytes"] = np.array([count], dtype="<i8").tobytes()
        else:
            reply["count"] = [count]
        return head, cbor2.dumps(reply)

    proxy = proxy_for(rates={"rewrite": 1.0}, rewrite=rewrite)
    result, error = _reduce_one(proxy, many_chunks)
    assert isinstance(error, ReductionistError), (result, error)
    assert "count" in str(error), error


def test_v1_headers_beside_a_right_body_are_ignored(proxy_for, many_chunks):
    """Headers of the v1 API that contradict the CBOR body: the body is the answer."""

    def rewrite(head: bytes, body: bytes) -> tuple[bytes, bytes]:
        lies = b"x-activestorage-dtype: int64\r\nx-activestorage-shape: [9, 9]\r\n"
        lies += b"x-activestorage-count: 7\r\nx-activestorage-byte-order: big\r\n"
        return head.replace(b"\r\n\r\n", b"\r\n" + lies + b"\r\n"), body

    proxy = proxy_for(rates={"rewrite": 1.0}, rewrite=rewrite)
    result, error = _reduce_one(proxy, many_chunks)
    assert error is None, error
    _exact(result, many_chunks)


@pytest.mark.parametrize("fault", ["trickle", "trickle_head"])
def test_trickling_reply_ends_at_the_deadline(proxy_for, many_chunks, fault):
    """A reply whose bytes (of the body, or of the whole reply from its status line) come one
    every 0.05 s, each well under the read timeout: cut at ``deadline``, not retried, one
    ReductionistError naming the server and the setting; with fallback="local" the chunk is
    reduced here."""
    proxy = proxy_for(rates={fault: 1.0}, trickle=0.05)
    result, error = _reduce_one(proxy, many_chunks, deadline=0.3)
    assert isinstance(error, ReductionistError), (result, error)
    _one_line(error, proxy.url)
    assert "deadline=" in str(error) and "after 1 attempt(s)" in str(error), error
    assert proxy.counts()[fault] == 1
    result, error = _reduce_one(proxy, many_chunks, deadline=0.3, fallback="local")
    assert error is None, error
    _exact(result, many_chunks)


def _status(code: bytes, retry_after: bytes | None) -> bytes:
    body = b'{"error": {"message": "storm", "caused_by": []}}'
    extra = b"Retry-After: " + retry_after + b"\r\n" if retry_after is not None else b""
    return (
        b"HTTP/1.1 " + code + b"\r\nContent-Type: application/json\r\n" + extra
        + b"Content-Length: %d\r\n\r\n" % len(body) + body
    )  # fmt: skip


@FUZZ
@given(
    code=st.sampled_from([b"500 Oops", b"502 Bad Gateway", b"503 Busy", b"504 Timeout"]),
    retry_after=st.sampled_from([None, b"0", b"-5", b"soon", b"Wed, 21 Oct 2015 07:28:00 GMT"]),
    rate=st.sampled_from([0.3, 1.0]),
    seed=st.integers(0, 999),
)
def test_5xx_storms(proxy_for, many_chunks, code, retry_after, rate, seed):
    """Storms of 5xx, with a Retry-After that is zero, negative, junk, a past date or absent:
    retried, then the exact answer or one ReductionistError naming the server and status."""
    proxy = proxy_for(rates={"status": rate}, status=_status(code, retry_after), seed=seed)
    _exact_or_one_error(proxy, many_chunks, code[:3].decode())


def test_reductionist_host_that_does_not_resolve(many_chunks):
    _, index, so = many_chunks
    server = "http://no-such-reductionist.invalid:8080"
    with (
        pytest.raises(ReductionistError) as info,
        Active(index, VAR, backend="reductionist", server=server, storage_options=so,
               retries=1, backoff=0.001) as active,
    ):  # fmt: skip
        active.mean[ONE]
    _one_line(info.value, "no-such-reductionist.invalid")
    assert so.get("secret", "\0") not in str(info.value)


# --------------------------------------------------------------------------- data reads
DATA_FAULTS = ("reset", "cut_body", "short_body", "slow", "no_range", "trickle", "status")
DATA_FUZZ = settings(FUZZ, max_examples=8)  # each stalled attempt costs its 0.5 s timeout


def scaled(rates: dict[str, float]) -> dict[str, float]:
    """``rates`` scaled to a total of at most 0.9 (some requests pass)."""
    total = sum(rates.values())
    return {k: 0.9 * v / total for k, v in rates.items()} if total > 0.9 else rates


@DATA_FUZZ
@given(
    rates=st.fixed_dictionaries({f: st.sampled_from([0.0, 0.1, 0.3]) for f in DATA_FAULTS}),
    code=st.sampled_from([b"500 Oops", b"503 Slow Down", b"502 Bad Gateway"]),
    retry_after=st.sampled_from([None, b"0", b"junk"]),
    seed=st.integers(0, 2**16),
)
def test_s3_data_read_fault_mix(s3_proxy, on_s3, data_file, rates, code, retry_after, seed):
    """S3 range reads (moto through the proxy) under any mix of resets, bodies cut under a
    right Content-Length or framed short, replies that never start (slow headers), ranges
    ignored, trickles and 5xx storms: the exact answer or one ChunkReadError naming the
    object, within the timeouts the test sets."""
    _, index, so = on_s3
    rates = scaled(rates)
    proxy = s3_proxy(rates=rates, seed=seed, status=_status(code, retry_after), trickle=0.02)
    options = {"read_timeout": 0.5, "read_deadline": 0.5, "read_retries": 3, "check_stale": False}
    sel = (slice(0, 2), slice(0, 16), slice(0, 20))  # 4 chunks
    try:
        with Active(index, VAR, storage_options=via(proxy, so), **options) as a:
            reader = a.local.readers.remote
            reader.max_gap, reader.max_block = -1, 1  # a request per chunk
            result = a.mean[sel]
    except ChunkReadError as exc:
        _one_line(exc, "s3://data-faults/faulty.nc")
        assert so["secret"] not in str(exc)
    else:
        expected = reduce_masked(oracle_read(data_file, VAR, sel), "mean", None)
        assert_same(result, expected, "mean", rtol=1e-6, where="s3 fault mix")


@DATA_FUZZ
@given(
    rates=st.fixed_dictionaries({f: st.sampled_from([0.0, 0.2]) for f in DATA_FAULTS}),
    seed=st.integers(0, 2**16),
)
def test_http_data_read_fault_mix(plain_nginx, limits_file, rates, seed):
    """The same over plain HTTP from nginx (fsspec's HTTP filesystem)."""
    nginx, _, index = plain_nginx
    rates = scaled(rates)
    with FaultProxy(nginx.url, match=("GET ",), rates=rates, seed=seed, trickle=0.02) as proxy:
        netloc = nginx.url.split("://", 1)[1]
        refs = json.loads(index.read_text().replace(netloc, proxy.netloc))
        options = {"read_timeout": 0.5, "read_deadline": 0.5, "read_retries": 3}
        try:
            with Active(refs, "v", check_stale=False, **options) as a:
                result = a.mean[...]
        except ChunkReadError as exc:
            _one_line(exc, f"{proxy.url}/limits.nc")
        else:
            expected = reduce_masked(oracle_read(limits_file, "v", Ellipsis), "mean", None)
            assert_same(result, expected, "mean", rtol=1e-6, where="http fault mix")


@pytest.mark.parametrize("cut_bytes", [0, 7, 200, 1500])
@pytest.mark.parametrize("fault", ["reset", "cut_body"])
def test_tls_cut_during_the_handshake(nginx_server, on_https, data_file, fault, cut_bytes):
    """HTTPS data whose TLS stream is cut (reset or closed) before the handshake is done:
    one ChunkReadError naming the URL, not a TLS verification verdict and not retried
    forever; half the connections cut: the exact answer."""
    url, index, so = on_https
    refs = json.loads(Path(index).read_text())
    origin = url.rsplit("/", 1)[0]
    options = {"read_timeout": 2.0, "read_retries": 1, "check_stale": False}
    with FaultProxy(nginx_server.url, mode="tcp", rates={fault: 1.0}, cut_bytes=cut_bytes) as p:
        moved = json.loads(json.dumps(refs).replace(origin, f"https://{p.netloc}"))
        with pytest.raises(ChunkReadError) as info, Active(moved, VAR, storage_options=so,
                                                           **options) as a:  # fmt: skip
            a.mean[...]
    _one_line(info.value, f"https://{p.netloc}/faulty.nc")
    assert "verification failed" not in str(info.value), info.value
    rates = {fault: 0.5}
    with FaultProxy(nginx_server.url, mode="tcp", rates=rates, cut_bytes=cut_bytes, seed=2) as p:
        moved = json.loads(json.dumps(refs).replace(origin, f"https://{p.netloc}"))
        with Active(moved, VAR, storage_options=so, **{**options, "read_retries": 8}) as a:
            result = a.mean[...]
    expected = reduce_masked(oracle_read(data_file, VAR, Ellipsis), "mean", None)
    assert_same(result, expected, "mean", rtol=1e-6, where="tls cut")
