"""Bad input and faults on the way to remote data, each against real components.

Servers down are real (a port nothing listens on); missing buckets and keys, wrong
credentials (moto enforcing IAM) and 400s are produced by the real servers. Only failures a
working server cannot be made to produce for real — a 500 mid-run, a dropped connection — use
the test Reductionist's fault injection (``inject``), which acts inside the real server.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from activezarr import Active, ActiveZarrError, build_index
from activezarr.backends.breaker import CircuitBreaker
from activezarr.errors import ChunkReadError, IndexBuildError, ReductionistError
from tests.oracle import assert_same
from tests.remote_fixtures import REMOTE_FILE, REMOTE_NCHUNKS, basic_auth, free_port, recording
from tests.servers.reductionist import start_reductionist

VAR = "f4_zlib_shuffle"  # every chunk goes to the server
ONE_CHUNK = (slice(0, 3), slice(0, 4), slice(0, 5))
FAST = {"retries": 1, "backoff": 0.0}


def s3_index(remote_data) -> Path:
    return remote_data.index("s3", "gen", REMOTE_FILE)


def assert_oracle(remote_data, result, op="mean", selection=Ellipsis) -> None:
    assert_same(result, remote_data.expected(VAR, op, selection), op, rtol=2e-5)


def refs_with_url(remote_data, origin: str, url: str) -> dict:
    """The index of remote.nc (built from ``origin``) with every chunk URL replaced."""
    refs = json.loads(Path(remote_data.index(origin, "gen", REMOTE_FILE)).read_text())
    for value in refs["refs"].values():
        if isinstance(value, list) and len(value) == 3:
            value[0] = url
    return refs


# ---------------------------------------------------------------------- server unreachable
def test_server_down_names_the_server(remote_data):
    down = f"http://127.0.0.1:{free_port()}"
    with (
        remote_data.on_server(VAR, down, **FAST) as active,
        pytest.raises(ReductionistError, match="cannot reach the server") as info,
    ):
        active.mean[ONE_CHUNK]
    message = str(info.value)
    assert down in message and info.value.server == down and info.value.status is None
    assert "connection refused" in message and "after 2 attempt(s)" in message
    assert isinstance(info.value.__cause__, requests.ConnectionError)  # the cause is kept


def test_server_down_with_local_fallback(remote_data):
    down = f"http://127.0.0.1:{free_port()}"
    with remote_data.on_server(VAR, down, fallback="local", **FAST) as active:
        assert_oracle(remote_data, active.mean[...])
        stats = active.stats
    assert (stats.chunks_remote, stats.chunks_local) == (0, REMOTE_NCHUNKS)
    # each chunk either failed at the server (and says why) or found its breaker open
    assert len(stats.fallbacks) + stats.chunks_breaker == REMOTE_NCHUNKS
    assert stats.fallbacks and all(down in reason for reason in stats.fallbacks)


def test_wrong_s3_endpoint(remote_data, reductionist):
    """The server cannot reach the object store: its 500 is retried, then reported with the
    URL it was asked for (which names the wrong endpoint)."""
    wrong = f"http://127.0.0.1:{free_port()}"
    so = remote_data.store.storage_options(client_kwargs={"endpoint_url": wrong})
    with (
        remote_data.on_server(
            VAR, reductionist.url, storage_options=so, check_stale=False, **FAST
        ) as active,
        pytest.raises(ReductionistError) as info,
    ):
        active.mean[ONE_CHUNK]
    assert info.value.status == 500
    assert wrong in str(info.value) and reductionist.url in str(info.value)
    assert "error receiving object from S3 storage" in str(info.value)


# ------------------------------------------------------------------- missing bucket / key
@pytest.mark.parametrize("what", ["bucket", "key"])
def test_missing_object_via_server(remote_data, reductionist, what):
    """S3 NoSuchBucket / NoSuchKey: a 400 from the server, not retried, message kept."""
    store = remote_data.store
    bucket = f"missing-{uuid.uuid4().hex[:8]}" if what == "bucket" else store.bucket
    key = f"gen/{REMOTE_FILE}" if what == "bucket" else "gen/gone.nc"
    refs = refs_with_url(remote_data, "s3", f"s3://{bucket}/{key}")
    so = store.storage_options()
    with (
        Active(refs, VAR, backend="reductionist", server=reductionist.url, storage_options=so) as a,
        pytest.raises(ReductionistError) as info,
    ):
        a.mean[ONE_CHUNK]
    assert info.value.status == 400
    message = str(info.value)
    assert ("NoSuchBucket" if what == "bucket" else "NoSuchKey") in message
    assert f"{store.endpoint_url}/{bucket}/{key}" in message
    assert reductionist.stats()["statuses"] == {"400": 1}  # not retried


@pytest.mark.parametrize("what", ["bucket", "key"])
def test_missing_object_locally(remote_data, what):
    store = remote_data.store
    url = (
        f"s3://missing-{uuid.uuid4().hex[:8]}/gen/{REMOTE_FILE}"
        if what == "bucket"
        else store.url("gen/gone.nc")
    )
    refs = refs_with_url(remote_data, "s3", url)
    with (
        Active(refs, VAR, storage_options=store.storage_options()) as active,
        pytest.raises(ChunkReadError, match="no such object") as info,
    ):
        active.mean[ONE_CHUNK]
    assert url in str(info.value)
    with pytest.raises(IndexBuildError, match="no such object"):
        build_index(
            url, out=remote_data.index_root / "never", storage_options=store.storage_options()
        )


# -------------------------------------------------------------------- wrong credentials
@pytest.fixture(scope="module")
def auth_bucket(moto_auth_server, generated_dir, tmp_path_factory):
    """remote.nc in a bucket of the moto that checks credentials; its index (built with the
    valid pair)."""
    bucket = f"private-{uuid.uuid4().hex[:8]}"
    client = moto_auth_server.client()
    client.create_bucket(Bucket=bucket)
    client.upload_file(str(generated_dir / REMOTE_FILE), bucket, REMOTE_FILE)
    so = moto_auth_server.storage_options()
    index = build_index(
        f"s3://{bucket}/{REMOTE_FILE}", out=tmp_path_factory.mktemp("auth"), storage_options=so
    )
    return moto_auth_server, index


SECRET = "wrong-secret-Zq8vN3kT0pX"


def test_wrong_credentials_via_server(auth_bucket, reductionist, caplog):
    """moto answers the server's signed GET with 403; the server says 401; the error says to
    check the credentials and never shows the secret (nor does any log line)."""
    moto, index = auth_bucket
    so = dict(moto.storage_options(), secret=SECRET)
    caplog.set_level(logging.DEBUG)
    with Active(
        index,
        VAR,
        backend="reductionist",
        server=reductionist.url,
        storage_options=so,
        check_stale=False,  # the freshness check would already fail with these credentials
        **FAST,
    ) as active:
        with recording(active) as sent, pytest.raises(ReductionistError) as info:
            active.mean[ONE_CHUNK]
        assert repr(active) and SECRET not in repr(active)
    assert info.value.status == 401
    message = str(info.value)
    assert "credentials" in message and "key/secret" in message
    assert SECRET not in message and SECRET not in repr(info.value)
    assert SECRET not in caplog.text
    assert [r.status for r in sent] == [401]  # not retried
    assert sent[0].headers["Authorization"] == basic_auth(moto.access_key, SECRET)


def test_wrong_credentials_locally(auth_bucket, caplog):
    moto, index = auth_bucket
    so = dict(moto.storage_options(), secret=SECRET)
    caplog.set_level(logging.DEBUG)
    with (
        Active(index, VAR, storage_options=so, check_stale=False) as active,
        pytest.raises(ChunkReadError, match="credentials") as info,
    ):
        active.mean[ONE_CHUNK]
    assert SECRET not in str(info.value) and SECRET not in caplog.text


def test_wrong_credentials_stale_check(auth_bucket):
    """Without check_stale=False the freshness check meets the bad credentials first."""
    moto, index = auth_bucket
    so = dict(moto.storage_options(), secret=SECRET)
    with pytest.raises(ActiveZarrError) as info:
        Active(index, VAR, storage_options=so)
    assert SECRET not in str(info.value)


def test_private_object_without_credentials(auth_bucket, moto_server, generated_dir, reductionist):
    """anon=True on a private object: 401, and the hint says credentials are needed."""
    bucket = f"private-{uuid.uuid4().hex[:8]}"
    moto_server.client().create_bucket(Bucket=bucket)
    moto_server.client().upload_file(str(generated_dir / REMOTE_FILE), bucket, REMOTE_FILE)
    _, index = auth_bucket
    refs = json.loads(Path(index).read_text())
    for value in refs["refs"].values():
        if isinstance(value, list) and len(value) == 3:
            value[0] = f"s3://{bucket}/{REMOTE_FILE}"
    anon = {"anon": True, "client_kwargs": {"endpoint_url": moto_server.endpoint_url}}
    with (
        Active(
            refs, VAR, backend="reductionist", server=reductionist.url, storage_options=anon
        ) as a,
        pytest.raises(ReductionistError, match="needs credentials") as info,
    ):
        a.mean[ONE_CHUNK]
    assert info.value.status == 401


# ----------------------------------------------------------------- the server's own answers
def test_server_400_keeps_its_message(remote_data, reductionist):
    """A chunk length that does not fit the chunk shape: the server's validation error (400,
    with its caused_by detail) is in the exception; not retried, no fallback."""
    var = "i8_valid_min_zero"  # uncompressed: the size must be prod(shape) x 8
    refs = json.loads(Path(s3_index(remote_data)).read_text())
    with (
        Active(
            refs,
            var,
            backend="reductionist",
            server=reductionist.url,
            storage_options=remote_data.storage_options("s3"),
            fallback="local",
        ) as active,
        pytest.raises(ReductionistError) as info,
    ):
        # an index claiming this is refused on load (IndexLoadError): change it after loading
        active.index.sizes[0] -= 8
        active.sum[ONE_CHUNK]
    assert info.value.status == 400
    assert "request data is not valid" in str(info.value)
    assert "does not match shape [3, 4, 5]" in str(info.value)
    assert reductionist.stats()["statuses"] == {"400": 1}


def test_500_then_recovery_is_retried(remote_data, reductionist):
    reductionist.inject(fail_next=2, status=500)
    with remote_data.on_server(VAR, reductionist.url, retries=3, backoff=0.0) as active:
        assert_oracle(remote_data, active.mean[...])
        stats = active.stats
    assert stats.retries == 2 and stats.requests == REMOTE_NCHUNKS + 2
    assert (stats.chunks_remote, stats.chunks_local) == (REMOTE_NCHUNKS, 0)
    assert reductionist.stats()["statuses"] == {"500": 2, "200": REMOTE_NCHUNKS}


def test_dropped_connections_are_retried(remote_data, reductionist):
    reductionist.inject(drop_next=3)
    with remote_data.on_server(VAR, reductionist.url, retries=3, backoff=0.0) as active:
        assert_oracle(remote_data, active.max[...], "max")
        stats = active.stats
    assert stats.retries == 3 and stats.chunks_remote == REMOTE_NCHUNKS
    assert reductionist.stats()["statuses"] == {"dropped": 3, "200": REMOTE_NCHUNKS}


def test_server_keeps_failing(remote_data, reductionist):
    reductionist.inject(fail_next=10_000, status=503)
    with (
        remote_data.on_server(VAR, reductionist.url, **FAST) as active,
        pytest.raises(ReductionistError, match="injected fault") as info,
    ):
        active.mean[ONE_CHUNK]
    assert info.value.status == 503
    assert reductionist.stats()["statuses"] == {"503": 2}  # one try and one retry


def test_server_keeps_failing_with_local_fallback(remote_data, reductionist):
    reductionist.inject(fail_next=10_000, status=500)
    breaker = CircuitBreaker(threshold=8)
    options = {"fallback": "local", "breaker": breaker, **FAST}
    with remote_data.on_server(VAR, reductionist.url, **options) as active:
        assert_oracle(remote_data, active.sum[...], "sum")
        stats = active.stats
    assert (stats.chunks_remote, stats.chunks_local) == (0, REMOTE_NCHUNKS)
    assert len(stats.fallbacks) + stats.chunks_breaker == REMOTE_NCHUNKS
    assert stats.fallbacks and all("500" in reason for reason in stats.fallbacks)
    # 8 failed attempts in a row open this breaker: the other attempts are never made
    assert stats.breaker_trips == 1
    assert reductionist.stats()["total"] == stats.requests < 2 * REMOTE_NCHUNKS


@pytest.fixture
def private_reductionist():
    """A Reductionist of this test's own: a request it sits on finishes after the test, and
    must not land in the statistics the other tests read from the shared server."""
    handle = start_reductionist()
    yield handle
    handle.stop()


def test_timeout_is_retried(remote_data, private_reductionist):
    """A request the server sits on past the client's timeout is retried (the delay is the
    fault, not a synchronisation: nothing waits for it)."""
    private_reductionist.inject(delay_next=1, delay=10.0)
    options = {"retries": 3, "backoff": 0.0, "timeout": 2.0}  # a loaded machine is slow
    with remote_data.on_server(VAR, private_reductionist.url, **options) as active:
        assert_oracle(remote_data, active.mean[ONE_CHUNK], selection=ONE_CHUNK)
        assert active.stats.retries >= 1 and active.stats.chunks_remote == 1


# --------------------------------------------------------- credentials must not go elsewhere
def test_index_pointing_at_another_host_is_refused(remote_data, reductionist):
    """Chunk URLs on a host that is not the storage options' endpoint: with credentials
    configured, the client refuses (the server would forward them there) unless allowed."""
    foreign = f"{remote_data.https_url}/gen/{REMOTE_FILE}"
    refs = refs_with_url(remote_data, "https", foreign)
    so = remote_data.store.storage_options(ssl=remote_data.ca_file)
    host = urlsplit(foreign).netloc
    options = {"backend": "reductionist", "server": reductionist.url, "storage_options": so}
    with (
        Active(refs, VAR, **options) as active,
        recording(active) as sent,
        pytest.raises(ActiveZarrError, match="allow_hosts") as info,
    ):
        active.mean[...]
        assert host in str(info.value) and remote_data.store.secret not in str(info.value)
    assert sent == [] and reductionist.stats()["total"] == 0
    with Active(refs, VAR, allow_hosts=(host,), **options) as active:
        assert_oracle(remote_data, active.mean[...])
        assert active.stats.chunks_remote == REMOTE_NCHUNKS
