"""Network faults on DATA reads: the local backend reading chunks of s3:// (moto) and https://
(nginx) sources, indexing them, and loading indexes from S3, through the real TCP fault proxy.

The proxy (``tests/servers/faultproxy.py``) sits between s3fs/aiohttp and the server: with
``match=("GET ",)`` it resets, cuts, shortens, stalls and fails the replies to range reads
(S3's 503 SlowDown among them); in tcp mode it cuts TLS streams it cannot read. Every answer
must equal the netCDF4 oracle, or the run must end in one ``ChunkReadError`` /
``IndexBuildError`` / ``IndexLoadError`` naming the object (never its credentials) — never a
short read decoded as data, never a hang (the stalls end at ``read_timeout``). No test sleeps
or times anything: the waits are the faults themselves.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activezarr import Active, build_index
from activezarr.errors import ChunkReadError, IndexBuildError, IndexLoadError, StaleIndexError
from tests.cli_run import run_cli
from tests.generate import temperatures, write_variable
from tests.oracle import assert_same, oracle_read, reduce_masked
from tests.remote_fixtures import resolver_says_no_such_host
from tests.servers.faultproxy import FaultProxy, proxy_maker
from tests.servers.s3 import make_bucket

VAR = "tas"
SHAPE, CHUNKS = (12, 40, 50), (2, 8, 10)  # 150 chunks of 160 values
FILL = np.float32(1e20)
FAST = {"read_timeout": 2.0, "read_retries": 4}
QUICK = {"read_timeout": 1.0, "read_retries": 1}
# replies a range read can get from a network or a busy store (each retried)
DATA_FAULTS = ("cut_body", "reset", "short_body", "empty_body", "cut_headers", "status")
FAULT_SAYS = {
    "cut_body": "connection was cut mid-reply",
    "reset": "connection was cut mid-reply",
    "short_body": "shorter than the byte range asked for",
    "empty_body": "shorter than the byte range asked for",
    "cut_headers": "connection was cut mid-reply",
    "status": "answered 503",
}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data-faults") / "faulty.nc"
    data = temperatures("data_faults", SHAPE, FILL)
    return write_variable(
        path, data, name=VAR, fill_value=FILL, chunks=CHUNKS, zlib=True, shuffle=True
    )


@pytest.fixture(scope="module")
def on_s3(moto_server, data_file, tmp_path_factory):
    """(bucket, index of the S3 copy built without faults, storage options)."""
    bucket = "data-faults"  # a fixed name: the proxy's faults follow the request lines
    make_bucket(moto_server, bucket)
    moto_server.client().upload_file(str(data_file), bucket, data_file.name)
    so = moto_server.storage_options()
    url = f"s3://{bucket}/{data_file.name}"
    index = build_index(url, out=tmp_path_factory.mktemp("s3-index"), storage_options=so)
    return bucket, index, so


@pytest.fixture
def s3_proxy(moto_server):
    """Make a FaultProxy in front of moto that faults range reads (GETs)."""
    with proxy_maker(moto_server.endpoint_url, match=("GET ",)) as make:
        yield make


def via(proxy: FaultProxy, so: dict) -> dict:
    """Storage options that reach moto through ``proxy``."""
    return {**so, "client_kwargs": {**so["client_kwargs"], "endpoint_url": proxy.url}}


def one_request_per_chunk(active: Active) -> Active:
    """Every chunk its own range request (no merging), so faults hit chunks, not the file."""
    active.local.readers.remote.max_gap = -1
    active.local.readers.remote.max_block = 1
    return active


RUNS = [
    ("mean", None, Ellipsis),
    ("sum", (1, 2), (slice(1, 11), slice(3, 37), slice(2, 48))),
    ("max", None, (slice(0, 12, 5), slice(None), slice(10, 50))),
]


def check(active: Active, path: Path, runs=RUNS) -> None:
    for op, axis, sel in runs:
        result = getattr(active, op)(axis=axis)[sel]
        expected = reduce_masked(oracle_read(path, VAR, sel), op, axis)
        assert_same(result, expected, op, rtol=1e-6, where=f"{op} {axis} {sel}")


# ------------------------------------------------------------------------- S3 data reads
def test_s3_fault_mix_gives_exact_answers(s3_proxy, on_s3, data_file):
    """4% each of resets, cut bodies, short (well-framed) bodies, empty 200s, replies cut in
    the headers and 503 SlowDown (a quarter of all attempts fail), one request per chunk:
    every answer exact, the faults retried (counted by the reader)."""
    _, index, so = on_s3
    proxy = s3_proxy(rates=dict.fromkeys(DATA_FAULTS, 0.04), seed=3, sequence=list(DATA_FAULTS[:4]))
    options = {**FAST, "read_retries": 8}
    with one_request_per_chunk(Active(index, VAR, storage_options=via(proxy, so), **options)) as a:
        check(a, data_file)
        retries = a.local.readers.remote.retries
    counts = proxy.counts()
    assert sum(counts.get(f, 0) for f in DATA_FAULTS) >= 20, counts
    # the reader retried every fault it met (the first four met the freshness check's reads)
    assert retries >= sum(counts.get(f, 0) for f in DATA_FAULTS if f != "cut_headers") - 4, counts


@pytest.mark.parametrize("fault", DATA_FAULTS)
def test_s3_fault_every_time_is_one_error(s3_proxy, on_s3, fault):
    """The same fault on every attempt: read_retries + 1 attempts, then one ChunkReadError
    naming the object, the bytes and what went wrong; nothing decoded."""
    bucket, index, so = on_s3
    proxy = s3_proxy(rates={fault: 1.0})
    with (
        Active(index, VAR, storage_options=via(proxy, so), check_stale=False, read_retries=2) as a,
        pytest.raises(ChunkReadError) as info,
    ):
        a.mean[0:2, 0:8, 0:10]
    message = str(info.value)
    assert f"s3://{bucket}/faulty.nc" in message and "bytes " in message, message
    assert FAULT_SAYS[fault] in message and "after 3 attempts" in message, message
    assert 3 <= proxy.counts()[fault] <= 6  # aiohttp may retry a reply cut in its headers once


@pytest.mark.parametrize("fault", ["slow", "stall_body"])
def test_s3_stall_ends_at_the_read_timeout(s3_proxy, on_s3, fault):
    """No reply, or half a reply and then nothing: each attempt ends at read_timeout."""
    _, index, so = on_s3
    proxy = s3_proxy(rates={fault: 1.0})
    options = {"read_timeout": 0.5, "read_retries": 1, "check_stale": False}
    with (
        Active(index, VAR, storage_options=via(proxy, so), **options) as a,
        pytest.raises(ChunkReadError, match="no reply in time") as info,
    ):
        a.mean[0:2, 0:8, 0:10]
    assert "after 2 attempts" in str(info.value)
    assert proxy.counts()[fault] == 2


def test_s3_store_gone_and_unresolvable_host(s3_proxy, on_s3):
    bucket, index, so = on_s3
    proxy = s3_proxy()
    proxy.kill()
    options = {"check_stale": False, "read_retries": 1}
    with (
        Active(index, VAR, storage_options=via(proxy, so), **options) as a,
        pytest.raises(ChunkReadError, match="cannot connect") as info,
    ):
        a.mean[0:2, 0:8, 0:10]
    assert f"s3://{bucket}/faulty.nc" in str(info.value)
    nowhere = {**so, "client_kwargs": {**so["client_kwargs"], "endpoint_url": "http://no.invalid"}}
    with (
        Active(index, VAR, storage_options=nowhere, **options) as a,
        pytest.raises(ChunkReadError, match="(resolve|connect)") as info,
    ):
        a.mean[0:2, 0:8, 0:10]
    assert "no.invalid" in str(info.value)


def test_s3_freshness_check_and_index_load_retry(s3_proxy, on_s3, moto_server, data_file):
    """The index itself on S3 and the freshness check (HEAD + two range reads) through the
    proxy with faults: loaded and checked right; faults every time: one IndexLoadError."""
    bucket, index, so = on_s3
    moto_server.client().upload_file(str(index), bucket, "index.json")
    url = f"s3://{bucket}/index.json"
    sequence = ["cut_body", "status", "reset", "short_body"]  # the first reads: the index's
    proxy = s3_proxy(rates={"cut_body": 0.05, "status": 0.05}, seed=5, sequence=sequence)
    with Active(url, VAR, storage_options=via(proxy, so), **FAST) as a:
        check(a, data_file, RUNS[:1])
    assert proxy.counts()["total"] >= proxy.counts().get("pass", 0) + 4
    broken = s3_proxy(rates={"reset": 1.0})
    with pytest.raises(IndexLoadError, match="connection was cut") as info:
        Active(url, VAR, storage_options=via(broken, so))
    assert url in str(info.value)


def test_indexing_through_faults(s3_proxy, on_s3, tmp_path, monkeypatch):
    """`build_index` of the S3 copy through a faulty proxy writes the same references as
    without faults; faults on every read end in one IndexBuildError naming the file."""
    bucket, index, so = on_s3
    url = f"s3://{bucket}/faulty.nc"
    monkeypatch.setenv("ACTIVEZARR_READ_RETRIES", "8")
    sequence = ["cut_body", "status", "short_body", "reset"]  # each read's first attempts
    proxy = s3_proxy(rates={"cut_body": 0.05, "status": 0.05}, seed=9, sequence=sequence)
    built = build_index(url, out=tmp_path / "a", storage_options=via(proxy, so))
    assert json.loads(Path(built).read_text())["refs"] == json.loads(index.read_text())["refs"]
    assert proxy.counts()["total"] >= proxy.counts()["pass"] + 4
    broken = s3_proxy(rates={"short_body": 1.0})
    with pytest.raises(IndexBuildError, match="shorter than the byte range|checksum") as info:
        build_index(url, out=tmp_path / "b", storage_options=via(broken, so))
    assert url in str(info.value)


def test_cli_index_and_reduce_through_faults(s3_proxy, on_s3, tmp_path):
    """The command line: one line on stderr, exit 1, no traceback, and the env variables
    that bound reads (ACTIVEZARR_READ_TIMEOUT / _RETRIES) reach it."""
    bucket, index, so = on_s3
    proxy = s3_proxy(rates={"reset": 1.0})
    options = json.dumps(via(proxy, so))
    env = {"ACTIVEZARR_READ_RETRIES": "1", "ACTIVEZARR_READ_TIMEOUT": "2"}
    for args in (
        ["index", f"s3://{bucket}/faulty.nc", "--out", str(tmp_path)],
        ["reduce", str(index), VAR, "--op", "mean", "--no-check-stale"],
    ):
        done = run_cli(*args, "--storage-options", options, env=env)
        assert done.returncode == 1, done.stderr
        errors = [line for line in done.stderr.splitlines() if "error" in line]
        assert "Traceback" not in done.stderr and len(errors) == 1, done.stderr
        assert "connection was cut mid-reply" in done.stderr and "after 2 attempts" in done.stderr
    assert proxy.counts()["reset"] >= 4


# ------------------------------------------------------------------------ HTTPS data reads
@pytest.fixture(scope="module")
def on_https(nginx_server, data_file, tmp_path_factory):
    """(URL, index built over HTTPS without faults, storage options with the test CA)."""
    shutil.copyfile(data_file, Path(nginx_server.root) / "faulty.nc")
    url = f"{nginx_server.url}/faulty.nc"
    so = {"ssl": nginx_server.ca_file}
    index = build_index(url, out=tmp_path_factory.mktemp("https-index"), storage_options=so)
    return url, index, so


def through_tcp_proxy(refs: dict, url: str, proxy: FaultProxy) -> dict:
    """The index with its https URLs sent to ``proxy`` (same certificate: 127.0.0.1)."""
    origin = url.rsplit("/", 1)[0]
    netloc = origin.split("://", 1)[1]
    text = json.dumps(refs).replace(origin, origin.replace(netloc, proxy.netloc))
    return json.loads(text)


@pytest.mark.parametrize("fault", ["reset", "cut_body"])
def test_https_streams_cut_mid_tls(nginx_server, on_https, data_file, fault):
    """A TCP proxy cuts the TLS stream of some connections (reset or clean close after 2,000
    bytes): those reads are retried and the answer is exact; cutting every connection ends
    in one ChunkReadError naming the URL."""
    url, index, so = on_https
    refs = json.loads(Path(index).read_text())
    with FaultProxy(nginx_server.url, mode="tcp", rates={fault: 0.5}, seed=1) as proxy:
        moved = through_tcp_proxy(refs, url, proxy)
        with one_request_per_chunk(
            Active(moved, VAR, storage_options=so, check_stale=False, **FAST)
        ) as a:
            check(a, data_file, RUNS[:1])
            retries = a.local.readers.remote.retries
        assert proxy.counts()[fault] >= 1 and retries >= 1, (proxy.counts(), retries)
    with FaultProxy(nginx_server.url, mode="tcp", rates={fault: 1.0}) as proxy:
        moved = through_tcp_proxy(refs, url, proxy)
        with (
            Active(moved, VAR, storage_options=so, check_stale=False, read_retries=1) as a,
            pytest.raises(ChunkReadError) as info,
        ):
            a.mean[...]
    assert f"{proxy.url.replace('http:', 'https:')}/faulty.nc" in str(info.value)
    assert "after 2 attempts" in str(info.value)


def test_https_tls_failures_are_not_retried(nginx_server, on_https, tmp_path):
    """A certificate the given CA did not sign, and a server that does not speak TLS: one
    error with the TLS reason at once (a retry cannot cure either)."""
    url, index, so = on_https
    other = tmp_path / "other-ca.pem"
    from tests.servers.nginx import make_certificate

    other.write_text(Path(make_certificate(tmp_path).cert).read_text())
    with (
        Active(index, VAR, storage_options={"ssl": str(other)}, check_stale=False) as a,
        pytest.raises(ChunkReadError, match="TLS certificate verification failed") as info,
    ):
        a.mean[...]
    assert "attempts" not in str(info.value)
    with FaultProxy(nginx_server.url) as plain:  # speaks plain HTTP on its port
        refs = through_tcp_proxy(json.loads(Path(index).read_text()), url, plain)
        with (
            Active(refs, VAR, storage_options=so, check_stale=False, **QUICK) as a,
            pytest.raises(ChunkReadError) as info,
        ):
            a.mean[...]
    assert plain.netloc in str(info.value)


def test_credentials_in_urls_are_never_shown(nginx_server, on_https, tmp_path):
    """URLs carrying user:password (chunk URLs, an index URL, a file to index) that fail:
    errors show ``***@host``, never the password, in Python and on the command line."""
    url, index, so = on_https
    secret = "pa55-Zq8vN3kT0pX"
    dead = "127.0.0.1:9"  # nothing listens on port 9
    text = Path(index).read_text().replace(url.rsplit("/", 1)[0], f"https://me:{secret}@{dead}")
    with (
        Active(json.loads(text), VAR, storage_options=so, check_stale=False, read_retries=0) as a,
        pytest.raises(ChunkReadError) as info,
    ):
        a.mean[...]
    assert secret not in str(info.value) and f"https://***@{dead}/faulty.nc" in str(info.value)
    with pytest.raises(IndexLoadError) as info:
        Active(f"https://me:{secret}@{dead}/index.json", VAR, storage_options=so)
    assert secret not in str(info.value) and "***@" in str(info.value)
    with pytest.raises(IndexBuildError) as info:
        build_index(f"https://me:{secret}@{dead}/x.nc", out=tmp_path, storage_options=so)
    assert secret not in str(info.value) and "***@" in str(info.value)
    shutil.copyfile(index, Path(nginx_server.root) / "faulty-index.json")
    served = url.replace("https://", f"https://me:{secret}@").replace(
        "faulty.nc", "faulty-index.json"
    )
    with Active(served, VAR, storage_options=so) as a:  # nginx ignores the Basic auth
        assert secret not in repr(a) and "***@" in repr(a)
    done = run_cli("index", f"https://me:{secret}@{dead}/x.nc", "--out", tmp_path)
    assert done.returncode == 1 and secret not in done.stderr + done.stdout, done.stderr
    assert "***@" in done.stderr


# ------------------------------------------------------------------------ fault schedules
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rates=st.fixed_dictionaries(
        {f: st.sampled_from([0.0, 0.05, 0.2, 0.5]) for f in DATA_FAULTS + ("delay",)}
    ),
    seed=st.integers(0, 2**16),
    retries=st.integers(0, 3),
)
def test_fault_schedules(s3_proxy, on_s3, data_file, rates, seed, retries):
    """Any mix of faults, any retry budget: the exact answer or one ChunkReadError, never
    another exception, never a wrong number."""
    scale = sum(rates.values())
    if scale > 0.9:
        rates = {k: 0.9 * v / scale for k, v in rates.items()}
    _, index, so = on_s3
    proxy = s3_proxy(rates=rates, seed=seed, delay=0.001)
    options = {"read_timeout": 2.0, "read_retries": retries, "check_stale": False}
    try:
        with one_request_per_chunk(
            Active(index, VAR, storage_options=via(proxy, so), **options)
        ) as a:
            reader = a.local.readers.remote
            reader.policy = dataclasses.replace(reader.policy, backoff=0.001)
            check(a, data_file, [("mean", None, (slice(0, 4), slice(0, 16), slice(0, 30)))])
    except ChunkReadError as exc:
        assert "s3://" in str(exc) and "bytes " in str(exc)
    finally:
        proxy.stop()


def test_https_unresolvable_host(on_https):
    """An index whose data host does not resolve: one error naming the host, never a hang;
    not retried when the resolver says the name does not exist (a resolver that did not
    answer may pass: that is retried)."""
    url, index, so = on_https
    text = Path(index).read_text().replace(url.rsplit("/", 1)[0], "https://no-such-host.invalid")
    with (
        Active(json.loads(text), VAR, storage_options=so, check_stale=False, **QUICK) as a,
        pytest.raises(ChunkReadError, match="cannot resolve the host name") as info,
    ):
        a.mean[...]
    assert "'no-such-host.invalid'" in str(info.value)
    retried = "after 2 attempts" in str(info.value)
    assert retried != resolver_says_no_such_host(), str(info.value)


def test_freshness_check_that_cannot_reach_a_source(moto_server, on_s3, data_file):
    """The freshness check's HEAD of the source cut every time (range reads pass): one
    line naming the source and the ways on, retry or skip the check (re-indexing would meet
    the same failure); skipping it, the reduction reads the data."""
    bucket, index, so = on_s3
    source = f"s3://{bucket}/faulty.nc"
    with FaultProxy(
        moto_server.endpoint_url, rates={"cut_headers": 1.0}, match=("HEAD ",)
    ) as proxy:
        with pytest.raises(StaleIndexError, match="pass check_stale=False") as info:
            Active(index, VAR, storage_options=via(proxy, so), read_retries=1)
        assert f"{source}, a source of {index}, could not be checked" in str(info.value)
        argv = [
            "reduce",
            index,
            VAR,
            "--op",
            "max",
            "--storage-options",
            json.dumps(via(proxy, so)),
        ]
        done = run_cli(*argv, env={"ACTIVEZARR_READ_RETRIES": "1"})
        skipped = run_cli(*argv, "--no-check-stale", "--json")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"{source}, a source of {index}, could not be checked for changes" in done.stderr
    assert "after 2 attempts" in done.stderr and "--force" not in done.stderr
    assert done.stderr.rstrip().endswith("or add --no-check-stale to skip the check")
    assert skipped.returncode == 0, skipped.stderr
    want = reduce_masked(oracle_read(data_file, VAR, ...), "max")
    assert json.loads(skipped.stdout)["result"] == float(want)


def test_freshness_head_that_trickles_ends_at_the_deadline(moto_server, on_s3):
    """The source's HEAD answered a byte at a time, each byte within the read timeout: the
    read timeout never fires, so only a total deadline ends it (it ran as long as the
    server liked); one line naming the source and the deadline."""
    bucket, index, so = on_s3
    with FaultProxy(
        moto_server.endpoint_url, rates={"trickle_head": 1.0}, match=("HEAD ",), trickle=0.05
    ) as proxy:
        with pytest.raises(StaleIndexError, match="not complete after 0.3 s") as info:
            Active(index, VAR, storage_options=via(proxy, so), read_retries=0, read_deadline=0.3)
        assert proxy.counts()["trickle_head"] == 1
    assert f"s3://{bucket}/faulty.nc" in str(info.value)
