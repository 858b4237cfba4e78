"""The xarray interface on remote data: an index of a file on S3 (moto), opened with
``open_dataset`` and reduced on the Reductionist test server through ``.active``."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import activezarr
from tests.remote_fixtures import FLOAT32_SERVER_RTOL, REAL_DIR

FILE = "CMIP6_IPSL-CM6A-LR_tas.nc"
pytestmark = pytest.mark.skipif(not (REAL_DIR / FILE).exists(), reason=f"{REAL_DIR} is missing")


@pytest.fixture
def remote_ds(remote_data, reductionist_target):
    index = remote_data.index("s3", "real", FILE)
    return activezarr.open_dataset(
        index,
        storage_options=remote_data.storage_options("s3"),
        backend="reductionist",
        server=reductionist_target.url,
        verify=reductionist_target.verify,
    )


def test_open_dataset_over_s3_and_reduce_on_reductionist(remote_ds):
    ref = xr.open_dataset(REAL_DIR / FILE)
    np.testing.assert_array_equal(remote_ds.lat.values, ref.lat.values)
    da = remote_ds.tas.sel(lat=slice(-30, 30))
    got = da.active.mean("time")
    expected = ref.tas.sel(lat=slice(-30, 30)).mean("time")
    xr.testing.assert_allclose(got, expected, rtol=FLOAT32_SERVER_RTOL)
    active = da.active._target().active
    assert active.stats.chunks_remote > 0 and active.stats.chunks_local == 0


def test_groupby_and_weighted_on_reductionist(remote_ds):
    ref = xr.open_dataset(REAL_DIR / FILE)
    got = remote_ds.tas.active.groupby("time.season").max(["time", "lon"])
    expected = ref.tas.groupby("time.season").max(["time", "lon"])
    xr.testing.assert_allclose(got, expected)
    weights = np.cos(np.deg2rad(remote_ds.lat))
    got = remote_ds.tas.active.weighted(weights).mean(["lat", "lon"])
    expected = ref.tas.weighted(np.cos(np.deg2rad(ref.lat))).mean(["lat", "lon"])
    xr.testing.assert_allclose(got, expected, rtol=FLOAT32_SERVER_RTOL)


def test_accessor_runs_on_a_dask_cluster(tmp_path, monkeypatch):
    """``open_dataset(..., executor=client)``: chunk batches of every accessor reduction run as
    tasks on a dask.distributed cluster, with the local answers."""
    distributed = pytest.importorskip("distributed")
    import activezarr.active
    from tests.xarray_files import write_series

    monkeypatch.setattr(activezarr.active, "BATCH_BYTES", 4 * 45 * 12 * 4)  # a few chunks each
    monkeypatch.setattr(activezarr.active, "DECODED_BATCH_BYTES", 4 * 45 * 12 * 4)
    nc = write_series(tmp_path / "tas.nc", calendar="noleap", years=2)
    index = activezarr.build_index(nc, out=tmp_path / "indexes")
    local = activezarr.open_dataset(index)
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
        distributed.get_task_stream(client) as stream,
    ):
        ds = activezarr.open_dataset(index, executor=client)
        weights = np.cos(np.deg2rad(ds.lat))
        for reduce in (
            lambda da: da.active.mean("time"),
            lambda da: da.active.weighted(weights).mean(["lat", "lon"]),
            lambda da: da.active.groupby("time.season").max(),
        ):
            xr.testing.assert_identical(reduce(ds.tas), reduce(local.tas))
    assert any("run_batch" in str(t["key"]) for t in stream.data), stream.data[:3]
