"""Limits on remote reads, through the real fault proxy in front of nginx (plain HTTP) and moto:
a server that ignores range requests is refused from the reply's head (its body is never
read), every request has a total deadline (a reply trickling in under the per-read timeout
ends), and the index itself is read with the timeout, retries and deadline given to ``Active``.

No test sleeps or times anything: the waits are the faults themselves, and a test that would
have to wait (a body that never comes, a trickle) passes only if the client gave up for the
reason asserted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from activezarr import Active, build_index
from activezarr.errors import ActiveZarrError, ChunkReadError, IndexLoadError
from activezarr.index.fetch import RangeIgnored, check_range
from tests.cli_run import run_cli
from tests.generate import temperatures, write_variable
from tests.oracle import assert_same, oracle_read, reduce_masked
from tests.servers.conftest_fixtures import require_nginx
from tests.servers.faultproxy import FaultProxy
from tests.servers.nginx import start_nginx
from tests.servers.s3 import make_bucket

VAR = "v"
SHAPE, CHUNKS = (4, 30, 40), (1, 30, 40)  # 4 chunks of 4.8 KB
NO_CHECK = {"check_stale": False}
# a 200 that claims 10 GB and sends nothing: reading its body would wait for the read timeout
HUGE_200 = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 10000000000\r\n\r\n"


@pytest.fixture(scope="module")
def limits_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("read-limits") / "limits.nc"
    return write_variable(
        path, temperatures("read_limits", SHAPE), name=VAR, chunks=CHUNKS, zlib=True
    )


@pytest.fixture(scope="module")
def plain_nginx(tmp_path_factory, limits_file):
    """nginx over plain HTTP (the proxy reads HTTP) serving the data file and its index."""
    require_nginx(tls=False)
    root = tmp_path_factory.mktemp("plain-root")
    shutil.copyfile(limits_file, root / limits_file.name)
    with start_nginx(root, tls=False) as handle:
        url = f"{handle.url}/{limits_file.name}"
        index = build_index(url, out=tmp_path_factory.mktemp("plain-index"))
        yield handle, url, Path(index)


def http_proxy(nginx, **options) -> FaultProxy:
    return FaultProxy(nginx.url, match=("GET ",), **options)


def moved_index(index: Path, nginx, proxy: FaultProxy) -> dict:
    """The index with its data URLs pointing at ``proxy``."""
    netloc = nginx.url.split("://", 1)[1]
    return json.loads(index.read_text().replace(netloc, proxy.netloc))


def check_mean(active: Active, path: Path) -> None:
    expected = reduce_masked(oracle_read(path, VAR, Ellipsis), "mean", None)
    assert_same(active.mean[...], expected, "mean", rtol=1e-6, where="mean")


def test_reads_through_the_checked_path_are_exact(plain_nginx, limits_file):
    """Range requests answered properly (206) through the proxy: the exact answer."""
    nginx, _, index = plain_nginx
    with http_proxy(nginx) as proxy, Active(moved_index(index, nginx, proxy), VAR, **NO_CHECK) as a:
        check_mean(a, limits_file)
        assert proxy.counts()["pass"] >= 1


@pytest.mark.parametrize(
    "status, says",
    [
        ("no_range", "answered 200 with the whole object"),  # nginx, the Range header dropped
        (HUGE_200, "the whole object (10000000000 bytes)"),  # and no body ever comes
        (
            b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-99/100000\r\n"
            b"Content-Length: 100\r\n\r\n" + b"x" * 100,
            "answered bytes 0-99",  # another range than asked for
        ),
    ],
)
def test_server_ignoring_ranges_is_refused_from_the_head(plain_nginx, status, says):
    """One ChunkReadError naming the URL and why, at the first reply (not retried), and
    without reading the body: the 10 GB reply sends none, so a reader waiting for it would
    end in a timeout, not in this message."""
    nginx, url, index = plain_nginx
    fault = {"rates": {"no_range": 1.0}} if status == "no_range" else {"status": status}
    fault.setdefault("rates", {"status": 1.0})
    with http_proxy(nginx, **fault) as proxy:
        refs = moved_index(index, nginx, proxy)
        with (
            Active(refs, VAR, read_timeout=30, **NO_CHECK) as a,
            pytest.raises(ChunkReadError) as info,
        ):
            a.mean[...]
        assert sum(v for k, v in proxy.counts().items() if k not in ("pass", "total")) == 1
    message = str(info.value)
    assert url.replace(nginx.url, proxy.url) in message and says in message, message
    assert "\n" not in message and "attempts" not in message


def test_index_read_whole_and_indexing_refused(plain_nginx, limits_file, tmp_path):
    """Through a server that ignores ranges: a remote index is still read (its whole body is
    what was asked for), and indexing a file there is one IndexBuildError naming it."""
    from activezarr.errors import IndexBuildError

    nginx, _, index = plain_nginx
    shutil.copyfile(index, Path(nginx.root) / "whole-index.json")
    with http_proxy(nginx, rates={"no_range": 1.0}) as proxy:
        with Active(f"{proxy.url}/whole-index.json", VAR, **NO_CHECK) as a:
            assert a.shape == SHAPE
        assert proxy.counts()["no_range"] >= 1
        source = f"{proxy.url}/{limits_file.name}"
        with pytest.raises(IndexBuildError, match="ignores HTTP range requests") as info:
            build_index(source, out=tmp_path)
    assert source in str(info.value) and "\n" not in str(info.value)


def test_range_check_rules():
    check_range(0, 10, 206, "bytes 0-9/20", "10")
    check_range(5, 10, 206, "bytes 5-7/8", "3")  # the object ends first: the length check says so
    check_range(0, 10, 200, None, "10")  # a small object read whole
    for args in [
        (5, 10, 200, None, "10"),
        (0, 10, 200, None, None),
        (0, 10, 200, None, "11"),
        (0, 10, 206, None, "10"),
        (0, 10, 206, "bytes 1-10/20", "10"),
        (0, 10, 206, "bytes 0-19/20", "20"),
        (0, 10, 206, "bytes 0-9/20", "4000"),
    ]:
        with pytest.raises(RangeIgnored):
            check_range(*args)


def test_trickling_reply_ends_at_the_deadline(plain_nginx):
    """Bytes every 0.05 s, well under the 30 s read timeout: the request ends at its deadline,
    with one error naming the URL and the setting, not retried."""
    nginx, url, index = plain_nginx
    with http_proxy(nginx, rates={"trickle": 1.0}, trickle=0.05) as proxy:
        refs = moved_index(index, nginx, proxy)
        options = {"read_timeout": 30, "read_deadline": 0.5, **NO_CHECK}
        with Active(refs, VAR, **options) as a, pytest.raises(ChunkReadError) as info:
            a.mean[...]
        assert proxy.counts()["trickle"] == 1
    message = str(info.value)
    assert url.replace(nginx.url, proxy.url) in message, message
    assert "read_deadline=" in message and "ACTIVEZARR_READ_DEADLINE" in message, message


def test_cli_deadline_from_the_environment(plain_nginx, tmp_path):
    """ACTIVEZARR_READ_DEADLINE reaches the command line: one line on stderr, exit 1."""
    nginx, _, index = plain_nginx
    with http_proxy(nginx, rates={"trickle": 1.0}, trickle=0.05) as proxy:
        moved = tmp_path / "moved.json"
        moved.write_text(json.dumps(moved_index(index, nginx, proxy)))
        done = run_cli(
            "reduce", moved, VAR, "--op", "mean", "--no-check-stale",
            env={"ACTIVEZARR_READ_DEADLINE": "0.5", "ACTIVEZARR_READ_TIMEOUT": "30"},
        )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "ACTIVEZARR_READ_DEADLINE" in done.stderr and proxy.netloc in done.stderr


def test_deadline_is_checked_and_documented_default():
    from activezarr.index.network import ReadPolicy

    assert ReadPolicy().deadline == 300.0
    for bad in (0, -1, "5", True):
        with pytest.raises(Exception, match="read_deadline must be a positive number"):
            ReadPolicy().with_options(deadline=bad)


def test_index_load_uses_the_options_given(plain_nginx, tmp_path):
    """A remote index behind a proxy that never answers its GET: read_timeout and
    read_retries given to Active bound it (one attempt of 0.5 s, not five of 30 s), and a
    trickling one ends at read_deadline; each one IndexLoadError naming the URL."""
    nginx, _, index = plain_nginx
    shutil.copyfile(index, Path(nginx.root) / "limits-index.json")
    with http_proxy(nginx, rates={"slow": 1.0}) as proxy:
        url = f"{proxy.url}/limits-index.json"
        with pytest.raises(IndexLoadError, match="no reply in time") as info:
            Active(url, VAR, read_timeout=0.5, read_retries=0)
        assert proxy.counts()["slow"] == 1
    assert url in str(info.value)
    with http_proxy(nginx, rates={"trickle": 1.0}, trickle=0.05) as proxy:
        url = f"{proxy.url}/limits-index.json"
        with pytest.raises(IndexLoadError, match="read_deadline") as info:
            Active(url, VAR, read_timeout=30, read_deadline=0.5)
        assert proxy.counts()["trickle"] == 1
    assert url in str(info.value)


# --------------------------------------------------------------------------- S3 (moto)
@pytest.fixture(scope="module")
def limits_on_s3(moto_server, limits_file, tmp_path_factory):
    bucket = "read-limits"
    make_bucket(moto_server, bucket)
    moto_server.client().upload_file(str(limits_file), bucket, limits_file.name)
    so = moto_server.storage_options()
    url = f"s3://{bucket}/{limits_file.name}"
    index = build_index(url, out=tmp_path_factory.mktemp("s3-limits"), storage_options=so)
    return url, index, so


def via(proxy: FaultProxy, so: dict) -> dict:
    return {**so, "client_kwargs": {**so["client_kwargs"], "endpoint_url": proxy.url}}


@pytest.mark.parametrize("fault", ["no_range", "huge", "trickle"])
def test_s3_ranges_and_deadline(moto_server, limits_on_s3, fault):
    """The same through s3fs: an S3 server that ignores ranges (no ContentRange) is refused
    before its body is read; a trickling GET ends at the deadline; the index and the
    freshness check (whose reads also pass the proxy) use the options given."""
    url, index, so = limits_on_s3
    options = (
        {"rates": {"status": 1.0}, "status": HUGE_200}
        if fault == "huge"
        else {"rates": {fault: 1.0}, "trickle": 0.05}
    )
    with FaultProxy(moto_server.endpoint_url, match=("GET ",), **options) as proxy:
        with (
            pytest.raises(ActiveZarrError) as info,
            Active(index, VAR, storage_options=via(proxy, so), read_deadline=0.5) as a,
        ):
            a.mean[...]
        assert sum(v for k, v in proxy.counts().items() if k not in ("pass", "total")) == 1
    message = str(info.value)
    assert url in message and "\n" not in message, message
    says = "read_deadline=" if fault == "trickle" else "ignores HTTP range requests"
    assert says in message, message
