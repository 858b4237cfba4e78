"""How many threads a local reduction uses: ``max_workers`` counts the calling thread.

The caller would only wait for the pool, so it reduces every ``max_workers``-th batch itself
and the pool has one thread fewer (each worker thread costs its buffers and a malloc arena).
Remote backends keep the whole pool: their batches wait on the network.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import activezarr
import activezarr.active as active_module
from activezarr import Active
from tests.oracle import oracle_read
from tests.xarray_files import write_series


@pytest.fixture(scope="module")
def daily(tmp_path_factory):
    root = tmp_path_factory.mktemp("threads")
    nc = write_series(root / "daily.nc", calendar="noleap", years=2, chunks=(1, 6, 8))
    return nc, activezarr.build_index(nc, out=root / "indexes")


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_the_calling_thread_is_one_of_the_workers(daily, workers, monkeypatch):
    nc, index = daily
    ran: list[int] = []
    dispatch = active_module.dispatch

    def recorded(*args):  # observes which thread reduces each batch; reduces it as before
        ran.append(threading.get_ident())
        return dispatch(*args)

    monkeypatch.setattr(active_module, "dispatch", recorded)
    monkeypatch.setattr(active_module, "DECODED_BATCH_BYTES", 4096)  # many batches
    want = oracle_read(nc, "tas", Ellipsis).mean(axis=0, dtype=np.float64)
    with Active(index, "tas", max_workers=workers) as active:
        got = active.reduce("mean", (), axis=0)
        threads = set(ran)
        assert threading.get_ident() in threads
        assert len(threads) <= workers
        if workers == 1:
            assert active._own_pool is None  # no pool at all
        else:
            assert active._own_pool._max_workers == workers - 1
        assert ran.count(threading.get_ident()) >= len(ran) // workers - 1
    np.testing.assert_array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(want))
    np.testing.assert_allclose(got.filled(0), want.filled(0), rtol=1e-6)


def test_values_are_read_by_the_caller_too(daily):
    nc, index = daily
    with Active(index, "tas", max_workers=2) as active:
        got = active[:]
    np.testing.assert_array_equal(got, oracle_read(nc, "tas", Ellipsis))
