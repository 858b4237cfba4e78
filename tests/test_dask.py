"""Chunk batches, catalog reductions and indexing on a dask.distributed cluster (processes).

One ``LocalCluster`` per module (it takes a few seconds to start). Results must equal the
local executor's and the netCDF4 oracle's.
"""

from __future__ import annotations

import numpy as np
import pytest

import activezarr.active
from activezarr import Active, Catalog, build_index
from activezarr.catalog.indexing import index_many
from tests.catalog_files import oracle_concat, write_month, write_series
from tests.oracle import OPS, assert_same, oracle_reduce, reduce_masked

distributed = pytest.importorskip("distributed")

CASES = [((), None), ((slice(3, 37), slice(None), 2), 0), ((slice(None, None, -3),), (1, 2))]


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture
def small_batches(monkeypatch):
    """Eight 48-byte chunks per batch, so that a small file makes many dask tasks."""
    monkeypatch.setattr(activezarr.active, "BATCH_BYTES", 8 * 48)
    monkeypatch.setattr(activezarr.active, "DECODED_BATCH_BYTES", 8 * 48)


@pytest.fixture(scope="module")
def long_file(tmp_path_factory):
    base = tmp_path_factory.mktemp("dask")
    path = write_month(base / "long.nc", 0, length=40, chunks=(2, 2, 3))
    return path, build_index(path, out=base / "indexes")


@pytest.mark.parametrize("var", ["tas", "pr"])
def test_active_on_dask_matches_local_and_oracle(client, small_batches, long_file, var):
    path, index = long_file
    with (
        Active(index, var) as local,
        Active(index, var, executor=client) as remote,
        distributed.get_task_stream(client) as stream,
    ):
        for op in OPS:
            for selection, axis in CASES:
                got = remote.reduce(op, selection, axis)
                where = f"{var} {op} {selection} axis={axis}"
                assert_same(got, local.reduce(op, selection, axis), op, rtol=0, where=where)
                want = oracle_reduce(path, var, op, selection, axis)
                assert_same(got, want, op, scaled=np.float64 if var == "pr" else False, where=where)
    batches = [t for t in stream.data if t["key"].startswith("run_batch")]
    assert len(batches) >= 2 * len(OPS) * len(CASES)
    assert len({t["worker"] for t in batches}) == 2


def test_client_executor_is_accepted_too(client, small_batches, long_file):
    path, index = long_file
    with Active(index, "tas", executor=client.get_executor()) as a:
        assert_same(a.sum[...], oracle_reduce(path, "tas", "sum"), "sum")


def test_index_many_and_catalog_reduce_on_dask(client, monkeypatch, tmp_path):
    overrides = {m: {"chunks": (4, 4, 6)} for m in range(6, 12)}
    paths = write_series(tmp_path / "data", 12, overrides=overrides)
    broken = tmp_path / "data" / "tas_99.nc"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    report = index_many([str(tmp_path / "data" / "*.nc")], tmp_path / "indexes", executor=client)
    assert len(report.indexed) == 12
    assert [p for p, _ in report.failed] == [str(broken)]
    cat = Catalog(tmp_path / "indexes")
    assert len(cat) == 12 and all(e.coords["time"]["size"] == 4 for e in cat)
    want_all = oracle_concat(paths, "tas")
    monkeypatch.setattr(activezarr.active, "BATCH_BYTES", 2 * 48)  # 4 tasks per small file
    monkeypatch.setattr(activezarr.active, "DECODED_BATCH_BYTES", 2 * 48)
    with distributed.get_task_stream(client) as stream:
        for op in OPS:
            got = cat.reduce("tas", op, axis=0, executor=client)
            assert_same(got, cat.reduce("tas", op, axis=0), op, rtol=0)
            assert_same(got, reduce_masked(want_all, op, 0), op)
    assert any(t["key"].startswith("run_batch") for t in stream.data)
