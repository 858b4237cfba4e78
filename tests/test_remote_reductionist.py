"""What the Reductionist backend sends, and where each chunk is reduced.

Requests are observed on the backend's own ``requests`` session (a response hook records the
real traffic); the server side is checked through the test server's per-operation statistics.
``remote.nc`` holds one variable per rule that decides server or local (``REMOTE_ROUTES``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from activezarr import Active, build_index
from tests.cli_run import run_cli
from tests.oracle import assert_same, oracle_info, oracle_read, reduce_masked
from tests.remote_fixtures import (
    OPS,
    REAL_REDUCTIONIST,
    REMOTE_CHUNKS,
    REMOTE_FILE,
    REMOTE_NCHUNKS,
    REMOTE_ROUTES,
    SERVER_OP,
    basic_auth,
    recording,
    tolerance_for,
)
from tests.servers.s3 import make_bucket, upload

LOCAL_SERVER_ONLY = pytest.mark.skipif(
    bool(REAL_REDUCTIONIST), reason="needs the tests' own Reductionist (REDUCTIONIST_URL is set)"
)
# every request field of the v2 API (reference spec, section 2)
API_FIELDS = {
    "interface_type",
    "url",
    "dtype",
    "byte_order",
    "offset",
    "size",
    "shape",
    "order",
    "selection",
    "axis",
    "compression",
    "filters",
    "missing",
    "option_disable_chunk_cache",
    "option_shape_as_bytes",
    "option_count_as_bytes",
}


def open_remote(remote_data, target, var: str, origin: str = "s3", **options) -> Active:
    return remote_data.on_server(var, target.url, origin, verify=target.verify, **options)


def chunk_ranges(index: Path, var: str) -> set[tuple[int, int]]:
    """(offset, size) of every stored chunk of ``var`` in a kerchunk JSON index."""
    refs = json.loads(Path(index).read_text())["refs"]
    return {
        (int(v[1]), int(v[2]))
        for k, v in refs.items()
        if k.startswith(f"{var}/") and not k.split("/")[-1].startswith(".")
    }


def check(remote_data, active, var: str, op: str, selection=Ellipsis, axis=None) -> None:
    path = remote_data.local_path("gen", REMOTE_FILE)
    info = oracle_info(path, var)
    data = oracle_read(path, var, selection)
    storage = np.dtype(active.index.dtype).newbyteorder("=")
    result = getattr(active, op)(axis=axis)[selection]
    scaled = info["dtype"] if info["scaled"] else False
    tol = tolerance_for(op, data, axis, "reductionist", storage, scaled)
    assert_same(result, reduce_masked(data, op, axis), op, scaled=scaled, where=var, **tol)


# ----------------------------------------------------------------------- where chunks go
@pytest.mark.parametrize("var", list(REMOTE_ROUTES))
def test_chunks_go_where_the_server_can_take_them(remote_data, reductionist_target, var):
    """Chunks the server can reduce are sent (counted by the server per operation); the rest
    (int16, fletcher32, int32 sums, equality + range rules) are reduced locally and the run's
    stats say so."""
    with open_remote(remote_data, reductionist_target, var) as active:
        for op in OPS:
            before = reductionist_target.operations()
            check(remote_data, active, var, op)
            after = reductionist_target.operations()
            stats = active.stats
            if REMOTE_ROUTES[var][op] == "remote":
                assert (stats.chunks_remote, stats.chunks_local) == (REMOTE_NCHUNKS, 0), stats
                assert stats.requests == REMOTE_NCHUNKS, stats
                expected = {SERVER_OP[op]: REMOTE_NCHUNKS}
            else:
                assert (stats.chunks_remote, stats.chunks_local) == (0, REMOTE_NCHUNKS), stats
                assert stats.requests == 0 and stats.bytes_received == 0, stats
                expected = {}
            if before is not None:
                delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k)}
                assert delta == expected, f"{var} {op}: server answered {delta}"


# --------------------------------------------------------------------------- request shape
def test_request_fields_for_s3(remote_data, reductionist_target):
    """mean is asked as sum; every field as the v2 API describes it; path-style S3 URL built
    from the endpoint; S3 credentials as Basic auth, to the configured server only."""
    store = remote_data.store
    var = "f4_zlib_shuffle"
    with open_remote(remote_data, reductionist_target, var) as active, recording(active) as sent:
        check(remote_data, active, var, "mean")
    assert len(sent) == REMOTE_NCHUNKS and all(r.status == 200 for r in sent)
    assert {r.url for r in sent} == {f"{reductionist_target.url}/v2/sum/"}
    server = urlsplit(reductionist_target.url).netloc
    assert all(urlsplit(r.url).netloc == server for r in sent)
    assert {r.headers.get("Authorization") for r in sent} == {basic_auth(store.key, store.secret)}
    index = remote_data.index("s3", "gen", REMOTE_FILE)
    assert {(r.body["offset"], r.body["size"]) for r in sent} == chunk_ranges(index, var)
    for r in sent:
        body = r.body
        assert set(body) <= API_FIELDS, set(body) - API_FIELDS
        assert body["interface_type"] == "s3"
        assert body["url"] == store.http_url(f"gen/{REMOTE_FILE}")
        assert (body["dtype"], body["byte_order"], body["order"]) == ("float32", "little", "C")
        assert body["shape"] == list(REMOTE_CHUNKS)
        assert body["selection"] == [[0, n, 1] for n in REMOTE_CHUNKS]
        assert body["compression"] == {"id": "zlib"}
        assert body["filters"] == [{"id": "shuffle", "element_size": 4}]
        assert body["missing"] == {"missing_value": float(np.float32(1e20))}
        assert "axis" not in body  # reduce over all axes


def test_request_axis_selection_and_byte_order(remote_data, reductionist_target):
    """Partial reductions send ``axis`` (dims dropped by an integer index included), the
    selection inside each chunk, and big-endian data says so."""
    var = "f8_big_endian"
    with open_remote(remote_data, reductionist_target, var) as active:
        with recording(active) as sent:
            check(remote_data, active, var, "max", (slice(None), slice(1, 7, 2), 3), axis=0)
        assert {r.url.rsplit("/", 2)[-2] for r in sent} == {"max"}
        for r in sent:
            assert r.body["axis"] == [0, 2]
            assert r.body["byte_order"] == "big" and r.body["dtype"] == "float64"
            assert r.body["selection"][2] == [3, 4, 1]
            assert r.body["selection"][1][2] == 2
        with recording(active) as sent:
            check(remote_data, active, var, "sum", (slice(None), slice(None), slice(None)), (0, 1))
        assert {tuple(r.body["axis"]) for r in sent} == {(0, 1)}


@pytest.mark.parametrize(
    ("var", "missing"),
    [
        ("f4_fill_zero", {"missing_value": 0.0}),
        ("i8_valid_min_zero", {"valid_min": 0}),
        ("f8_missing_vector", {"missing_values": [-99.0, -98.0, 1e20, 9.969209968386869e36]}),
        ("i8_scaled", {"missing_value": -1}),
    ],
)
def test_request_missing_rule(remote_data, reductionist_target, var, missing):
    """Zero fills and bounds are sent (not dropped as falsy); vectors go as missing_values."""
    with open_remote(remote_data, reductionist_target, var) as active, recording(active) as sent:
        check(remote_data, active, var, "count")  # (sums of packed int64 stay local)
    assert sent
    for r in sent:
        got = r.body["missing"]
        if "missing_values" in got:
            got = {"missing_values": sorted(got["missing_values"])}
            missing = {"missing_values": sorted(missing["missing_values"])}
        assert got == missing


@LOCAL_SERVER_ONLY
def test_request_fields_for_https(remote_data, reductionist_target):
    """An https chunk URL goes as interface_type "https" with the URL itself, and without
    credentials when none are configured."""
    var = "f4_zlib_shuffle"
    with (
        open_remote(remote_data, reductionist_target, var, origin="https") as active,
        recording(active) as sent,
    ):
        check(remote_data, active, var, "min")
    assert len(sent) == REMOTE_NCHUNKS
    for r in sent:
        assert r.body["interface_type"] == "https"
        assert r.body["url"] == f"{remote_data.https_url}/gen/{REMOTE_FILE}"
        assert "Authorization" not in r.headers


def test_stats_count_requests_and_bytes(remote_data, reductionist_target):
    var = "f8_missing_vector"
    with open_remote(remote_data, reductionist_target, var) as active, recording(active) as sent:
        check(remote_data, active, var, "count")
        stats = active.stats
    index = remote_data.index("s3", "gen", REMOTE_FILE)
    assert stats.requests == len(sent) == REMOTE_NCHUNKS
    assert stats.bytes_requested == sum(size for _, size in chunk_ranges(index, var))
    assert stats.bytes_received > 0 and stats.retries == 0 and not stats.fallbacks


def test_credentials_from_an_aws_profile(remote_data, reductionist_target, tmp_path, monkeypatch):
    """storage_options={"profile": name}: the profile's key pair is what the server gets."""
    store = remote_data.store
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[remote-test]\naws_access_key_id = {store.key}\naws_secret_access_key = {store.secret}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    so = {"profile": "remote-test", "client_kwargs": {"endpoint_url": store.endpoint_url}}
    var = "f4_zlib_shuffle"
    with (
        Active(
            remote_data.index("s3", "gen", REMOTE_FILE),
            var,
            backend="reductionist",
            server=reductionist_target.url,
            verify=reductionist_target.verify,
            storage_options=so,
        ) as active,
        recording(active) as sent,
    ):
        check(remote_data, active, var, "count")
    assert sent and {r.headers["Authorization"] for r in sent} == {
        basic_auth(store.key, store.secret)
    }


# ------------------------------------------------------------------------ anonymous access
@LOCAL_SERVER_ONLY
def test_anonymous_public_bucket_sends_no_credentials(
    moto_server, generated_dir, remote_data, reductionist_target, tmp_path
):
    """anon=True: the server gets no Authorization header and reads the public object unsigned.

    The index is built with credentials and its freshness is not checked: moto answers an
    unsigned HEAD with 403 even in a public bucket (AWS allows it with s3:GetObject), and both
    indexing and the freshness check start with a HEAD. Unsigned GETs work.
    """
    bucket = f"public-{uuid.uuid4().hex[:10]}"
    make_bucket(moto_server, bucket, public=True)
    upload(moto_server, bucket, REMOTE_FILE, generated_dir / REMOTE_FILE)
    signed = {
        "key": "k",
        "secret": "s",
        "client_kwargs": {"endpoint_url": moto_server.endpoint_url},
    }
    index = build_index(f"s3://{bucket}/{REMOTE_FILE}", out=tmp_path, storage_options=signed)
    anon = {"anon": True, "client_kwargs": {"endpoint_url": moto_server.endpoint_url}}
    var = "f4_zlib_shuffle"
    with Active(
        index,
        var,
        backend="reductionist",
        server=reductionist_target.url,
        storage_options=anon,
        check_stale=False,
    ) as active:
        with recording(active) as sent:
            check(remote_data, active, var, "mean")
        assert active.stats.chunks_remote == REMOTE_NCHUNKS
    assert len(sent) == REMOTE_NCHUNKS
    assert all("Authorization" not in r.headers and r.status == 200 for r in sent)
    assert {r.body["url"] for r in sent} == {f"{moto_server.endpoint_url}/{bucket}/{REMOTE_FILE}"}


# ------------------------------------------------------------------------------------ CLI
def test_cli_reduce_with_server(remote_data, reductionist_target):
    """``activezarr reduce INDEX VAR --server URL --endpoint-url URL`` reduces on the server;
    credentials from the usual AWS environment variables."""
    store = remote_data.store
    index = remote_data.index("s3", "gen", REMOTE_FILE)
    var = "f8_big_endian"
    before = reductionist_target.operations()
    proc = run_cli(
        "reduce", str(index), var, "--op", "mean", "--select", "1:5,::2", "--axis", "0",
        "--server", reductionist_target.url, "--endpoint-url", store.endpoint_url, "--json",
        env=store.env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    data = oracle_read(
        remote_data.local_path("gen", REMOTE_FILE), var, (slice(1, 5), slice(None, None, 2))
    )
    expected = reduce_masked(data, "mean", 0)
    got = np.ma.masked_invalid(np.array(payload["result"], dtype=float))
    assert_same(got, expected, "mean", atol=1e-9)
    assert payload["stats"]["chunks_remote"] > 0 and payload["stats"]["chunks_local"] == 0
    after = reductionist_target.operations()
    if before is not None:
        assert after.get("sum", 0) - before.get("sum", 0) == payload["stats"]["requests"]
    assert store.secret not in proc.stdout + proc.stderr
