"""S3: indexing objects (library and CLI), indexes stored in a bucket, coalesced range reads.

The store is moto's server (or the one named by S3_ENDPOINT_URL when REDUCTIONIST_URL is set).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from activezarr import Active
from activezarr.readers import merged_ranges
from tests.cli_run import run_cli
from tests.oracle import assert_same, oracle_read
from tests.remote_fixtures import REMOTE_FILE, REMOTE_NCHUNKS

VAR = "f4_fill_zero"


def chunk_refs(index) -> dict:
    refs = json.loads(Path(index).read_text())["refs"]
    return {k: v for k, v in refs.items() if isinstance(v, list) and len(v) == 3}


# ------------------------------------------------------------------------------ indexing
def test_s3_index_matches_the_local_one(remote_data):
    """Indexing s3://... gives the local index with the object's URL in every chunk ref."""
    remote = chunk_refs(remote_data.index("s3", "gen", REMOTE_FILE))
    local = chunk_refs(remote_data.index("local", "gen", REMOTE_FILE))
    url = remote_data.store.url(f"gen/{REMOTE_FILE}")
    assert remote.keys() == local.keys() and remote
    assert {v[0] for v in remote.values()} == {url}
    assert {k: v[1:] for k, v in remote.items()} == {k: v[1:] for k, v in local.items()}


def test_s3_index_is_in_the_catalog_with_an_etag(remote_data):
    index = remote_data.index("s3", "gen", REMOTE_FILE)
    from activezarr import Catalog

    url = remote_data.store.url(f"gen/{REMOTE_FILE}")
    entry = Catalog(Path(index).parent)[url]
    size = (remote_data.local_path("gen", REMOTE_FILE)).stat().st_size
    assert entry.index.name == Path(index).name
    assert entry.fingerprint["size"] == size and entry.fingerprint["etag"]


# ----------------------------------------------------------------------- index on S3
@pytest.fixture(scope="module")
def index_on_s3(remote_data) -> str:
    """The S3-sourced index of remote.nc, itself stored in the bucket."""
    return remote_data.store.upload(
        "indexes/remote.json", remote_data.index("s3", "gen", REMOTE_FILE)
    )


@pytest.mark.parametrize("backend", ["local", "reductionist"])
def test_index_on_s3(remote_data, reductionist_target, index_on_s3, backend):
    """``Active("s3://bucket/indexes/x.json", var, storage_options=...)``."""
    options = {}
    if backend == "reductionist":
        options = {
            "backend": "reductionist",
            "server": reductionist_target.url,
            "verify": reductionist_target.verify,
        }
    so = remote_data.storage_options("s3")
    with Active(index_on_s3, VAR, storage_options=so, **options) as active:
        assert active.source == index_on_s3
        selection = (slice(None), slice(2, 8))
        assert_same(
            active.sum(axis=1)[selection],
            remote_data.expected(VAR, "sum", selection, 1),
            "sum",
            rtol=2e-5,
            atol=1e-4,
        )
        remote = active.stats.chunks_remote
    assert remote == (REMOTE_NCHUNKS if backend == "reductionist" else 0)


# ---------------------------------------------------------------------- coalesced reads
def test_merged_ranges_coalesce_neighbours_per_object():
    urls = ["s3://b/x", "s3://b/x", "s3://b/y", "s3://b/x", "s3://b/x"]
    starts = np.array([100, 0, 0, 5000, 130])
    ends = np.array([120, 90, 10, 5100, 150])
    groups = merged_ranges(urls, starts, ends, max_gap=16, max_block=1 << 20)
    got = [(g.url, g.start, g.end, g.members) for g in groups]
    assert got == [
        ("s3://b/x", 0, 150, [1, 0, 4]),  # gaps of 10 bytes merged
        ("s3://b/x", 5000, 5100, [3]),  # too far: its own request
        ("s3://b/y", 0, 10, [2]),
    ]


def test_merged_ranges_respect_max_block():
    starts = np.arange(0, 1000, 100)
    groups = merged_ranges(["u"] * 10, starts, starts + 100, max_gap=0, max_block=250)
    assert [(g.start, g.end) for g in groups] == [
        (0, 200),
        (200, 400),
        (400, 600),
        (600, 800),
        (800, 1000),
    ]
    big = merged_ranges(["u"], np.array([0]), np.array([10_000]), max_gap=0, max_block=250)
    assert [(g.start, g.end) for g in big] == [(0, 10_000)]


def test_remote_reads_cover_every_chunk(remote_data):
    """A whole-variable read from S3 (ranges merged into few requests) gives netCDF4's data."""
    with Active(
        remote_data.index("s3", "gen", REMOTE_FILE),
        "f8_missing_vector",
        storage_options=remote_data.storage_options("s3"),
    ) as active:
        got = active[...]
    want = oracle_read(remote_data.local_path("gen", REMOTE_FILE), "f8_missing_vector")
    assert np.array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(want))
    assert np.array_equal(got.compressed(), want.compressed())


# ------------------------------------------------------------------------------------ CLI
def test_cli_index_s3_with_endpoint_url(remote_data, tmp_path):
    """``activezarr index s3://... --endpoint-url URL`` (credentials from the AWS environment
    variables), then ``activezarr reduce`` on the result."""
    store = remote_data.store
    url = store.url(f"gen/{REMOTE_FILE}")
    env = store.env()
    endpoint = ["--endpoint-url", store.endpoint_url]
    proc = run_cli("index", url, *endpoint, "--out", str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr
    index = tmp_path / "remote.json"
    assert chunk_refs(index) == chunk_refs(remote_data.index("s3", "gen", REMOTE_FILE))
    proc = run_cli(
        "reduce", str(index), VAR, "--op", "max", "--axis", "0", "--json", *endpoint, env=env
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    want = remote_data.expected(VAR, "max", Ellipsis, 0)
    got = np.ma.masked_invalid(np.array(payload["result"], dtype=np.float64))
    assert_same(got.astype(np.float32), want, "max")
    assert payload["stats"]["chunks_local"] == REMOTE_NCHUNKS


def test_cli_index_s3_with_storage_options_json(remote_data, tmp_path):
    store = remote_data.store
    options = json.dumps(store.storage_options())
    proc = run_cli(
        "index",
        store.url(f"gen/{REMOTE_FILE}"),
        "--storage-options",
        options,
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert store.secret not in proc.stdout + proc.stderr
    assert (tmp_path / "remote.json").exists()


def test_cli_index_missing_object_is_one_line(remote_data, tmp_path):
    store = remote_data.store
    url = store.url("gen/absent.nc")
    proc = run_cli(
        "index",
        url,
        "--storage-options",
        json.dumps(store.storage_options()),
        "--out",
        str(tmp_path),
    )
    assert proc.returncode != 0
    assert url in proc.stderr and "no such object" in proc.stderr
    assert "Traceback" not in proc.stderr and store.secret not in proc.stderr


def test_one_index_over_s3_and_https(remote_data):
    """Chunks of one variable spread over an S3 object and an HTTPS copy: one storage-options
    dict serves both (S3 credentials and endpoint go to s3fs only, the CA bundle to aiohttp)."""
    refs = json.loads(Path(remote_data.index("s3", "gen", REMOTE_FILE)).read_text())
    https = remote_data.location("https", "gen", REMOTE_FILE)
    keys = sorted(k for k in refs["refs"] if k.startswith(f"{VAR}/") and "/." not in k)
    for key in keys[::2]:
        refs["refs"][key][0] = https
    so = remote_data.store.storage_options(ssl=remote_data.ca_file)
    with Active(refs, VAR, storage_options=so) as active:
        assert {u.split("://")[0] for u in active.index.urls} == {"s3", "https"}
        assert_same(active.mean[...], remote_data.expected(VAR), "mean")
        got = active[...]
    want = oracle_read(remote_data.local_path("gen", REMOTE_FILE), VAR)
    assert np.array_equal(got.filled(-1), want.filled(-1))


def test_s3_source_rewritten_after_indexing_is_stale(remote_data, tmp_path):
    """The fingerprint recorded in the index (size, ETag, first and last bytes) is checked on
    open with one HEAD and two small reads, with no catalog beside a copied index."""
    import shutil

    from activezarr import build_index
    from activezarr.errors import StaleIndexError

    key = f"stale/{tmp_path.name}/dims.nc"
    url = remote_data.store.upload(key, remote_data.local_path("gen", "dims.nc"))
    options = remote_data.store.storage_options()
    index = build_index(url, out=tmp_path / "idx", storage_options=options)
    copied = tmp_path / "elsewhere" / "dims.json"
    copied.parent.mkdir()
    shutil.copyfile(index, copied)
    # (no open before the rewrite: a check's result is reused for 60 s within a process)
    remote_data.store.upload(key, remote_data.local_path("gen", "layouts.nc"))
    with pytest.raises(StaleIndexError, match="changed since it was indexed"):
        Active(copied, "d1", storage_options=options)
