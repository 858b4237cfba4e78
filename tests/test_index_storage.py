"""How indexes are stored and loaded: the binary chunk-table cache and parquet references.

Both are accelerations of the same kerchunk reference set, so every check compares them with
the JSON index and with the netCDF4 oracle.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import fsspec
import numpy as np
import pytest

import activezarr
from activezarr.index import cache
from activezarr.index.load import load_variable, read_index
from activezarr.index.refs import json_attr
from tests.fixtures_data import REAL_DIR, needs_real_files
from tests.oracle import assert_same, oracle_reduce
from tests.zarr_recipe import open_zarr

CASES = [
    ("test1.nc", "tas"),
    ("CMIP6_IPSL-CM6A-LR_tas.nc", "tas"),
    ("daily_data.nc", "ta"),
    ("zero_chunked.nc", "var"),
]
pytestmark = needs_real_files

SELECTIONS = [Ellipsis, (slice(0, 2), slice(1, -1)), (-1,)]


def _same_table(a, b, types: bool = True, facts: bool = True) -> None:
    """Same metadata and chunk table (``facts=False``: the fill facts of activezarr's own
    top-level member are not compared, for indexes written by other tools)."""
    a.load_chunks()
    b.load_chunks()
    fill = ("fill_value", "fill_attr", "no_fill") if facts else ()
    for field in ("shape", "chunks", "dtype", *fill, "codecs", "dims", "urls"):
        assert getattr(a, field) == getattr(b, field), field
    if types:
        assert a.attribute_types == b.attribute_types
        assert a.attrs.keys() == b.attrs.keys()
        for key, value in a.attrs.items():  # typed: numpy scalars and arrays, same dtype
            assert type(value) is type(b.attrs[key]), key
            assert np.array_equal(value, b.attrs[key]), key
            assert np.shape(value) == np.shape(b.attrs[key]), key
    else:  # parquet references have no attribute types yet: compare as JSON
        assert a.attrs == {k: json_attr(v) for k, v in b.attrs.items()}
    assert a.inline == b.inline
    np.testing.assert_array_equal(a.url_ids, b.url_ids)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.sizes, b.sizes)


@pytest.mark.parametrize(("filename", "var"), CASES)
def test_cache_written_at_index_time_matches_json(tmp_path, filename, var):
    index = activezarr.build_index(REAL_DIR / filename, tmp_path)
    cached = cache.load(index, var, str(index))
    assert cached is not None, "build_index should leave a chunk-table cache"
    _same_table(cached[0], load_variable(read_index(index), var))


def test_changed_index_invalidates_cache(tmp_path):
    index = activezarr.build_index(REAL_DIR / "test1.nc", tmp_path)
    before = activezarr.Active(index, "tas").count[...]
    refs = json.loads(index.read_text())
    for key in [k for k in refs["refs"] if k.startswith("tas/0.")]:
        del refs["refs"][key]  # these chunks now read as fill
    index.write_text(json.dumps(refs))
    os.utime(index, ns=(1, 1))  # a different stamp even on coarse clocks
    assert cache.load(index, "tas", str(index)) is None
    after = activezarr.Active(index, "tas", check_stale=False).count[...]
    assert int(after) < int(before)
    assert cache.load(index, "tas", str(index)) is not None, "a fresh cache is written back"


def test_unwritable_cache_dir_only_costs_speed(tmp_path):
    index = activezarr.build_index(REAL_DIR / "test1.nc", tmp_path)
    cache_root = tmp_path / cache.CACHE_DIR
    shutil.rmtree(cache_root)
    cache_root.write_text("not a directory")
    result = activezarr.Active(index, "tas").mean[...]
    assert_same(result, oracle_reduce(REAL_DIR / "test1.nc", "tas", "mean"), "mean")


@pytest.mark.parametrize(("filename", "var"), CASES)
@pytest.mark.parametrize("op", ["mean", "max", "count"])
def test_parquet_index_matches_oracle(tmp_path_factory, filename, var, op):
    out = tmp_path_factory.mktemp("parquet")
    index = activezarr.build_index(REAL_DIR / filename, out, format="parquet")
    assert index.suffix == ".parq" and (index / ".zmetadata").is_file()
    active = activezarr.Active(index, var)
    for sel in SELECTIONS[: 1 if len(active.shape) < 2 else None]:
        expected = oracle_reduce(REAL_DIR / filename, var, op, sel)
        assert_same(active.reduce(op, sel), expected, op, where=f"{filename}:{var}{sel}")


def test_parquet_table_equals_json_table(tmp_path):
    pq = activezarr.build_index(REAL_DIR / "test1.nc", tmp_path / "pq", format="parquet")
    js = activezarr.build_index(REAL_DIR / "test1.nc", tmp_path / "js")
    for var in ("tas", "lat", "time_bnds", "height"):
        pq_var, js_var = activezarr.Active(pq, var).index, activezarr.Active(js, var).index
        _same_table(pq_var, js_var, types=pq_var.attribute_types != {})


def test_parquet_index_opens_in_plain_fsspec_and_zarr(tmp_path):
    """fsspec's own parquet reader opens the index through zarr unchanged."""
    from fsspec.implementations.reference import LazyReferenceMapper

    index = activezarr.build_index(REAL_DIR / "test1.nc", tmp_path, format="parquet")
    group = open_zarr(
        LazyReferenceMapper(str(index), fs=fsspec.filesystem("file"), engine="pyarrow")
    )
    import netCDF4

    with netCDF4.Dataset(REAL_DIR / "test1.nc") as ds:
        ds.set_auto_maskandscale(False)
        np.testing.assert_array_equal(group["tas"][:], ds["tas"][:])


# kerchunk's parquet records no sources: its chunks may lie under its own directory, or where
# the user allows.
TRUSTED = {"check_stale": False, "allow_paths": [str(REAL_DIR)]}


def _kerchunk_parquet(json_index: Path, out: Path, record_size: int) -> Path:
    """The JSON index rewritten by fsspec's ``LazyReferenceMapper`` (kerchunk's writer)."""
    from fsspec.implementations.reference import LazyReferenceMapper

    refs = json.loads(json_index.read_text())["refs"]
    mapper = LazyReferenceMapper.create(
        str(out), fs=fsspec.filesystem("file"), record_size=record_size, engine="pyarrow"
    )
    for key in sorted(refs):
        value = refs[key]
        mapper[key] = json.dumps(value) if isinstance(value, dict) else value
    mapper.flush()
    return out


@pytest.mark.parametrize("record_size", [7, 100_000])
def test_kerchunk_written_parquet_loads_like_json(tmp_path, record_size):
    """Parquet references written by kerchunk/fsspec (several files, a short last file,
    plain string paths) load into the same chunk table as the JSON index."""
    js = activezarr.build_index(REAL_DIR / "test1.nc", tmp_path / "js")
    pq = _kerchunk_parquet(js, tmp_path / "kerchunk.parq", record_size)
    for var in ("tas", "lat", "time_bnds", "height"):
        lazy = activezarr.Active(pq, var, **TRUSTED).index
        _same_table(lazy, activezarr.Active(js, var).index, types=False, facts=False)
    got = activezarr.Active(pq, "tas", **TRUSTED).mean[1:9, 3:-3]
    assert_same(
        got,
        oracle_reduce(REAL_DIR / "test1.nc", "tas", "mean", (slice(1, 9), slice(3, -3))),
        "mean",
    )


def test_parquet_reads_only_the_row_groups_a_selection_touches(tmp_path):
    """With 3 chunks a file, reducing one time step reads only the files holding its chunks."""
    js = activezarr.build_index(REAL_DIR / "test1.nc", tmp_path / "js")
    pq = _kerchunk_parquet(js, tmp_path / "kerchunk.parq", 3)
    active = activezarr.Active(pq, "tas", **TRUSTED)
    loader = active.index.loader
    files = len(loader.pending)
    assert files == 6  # 16 chunks of (6, 32, 32)
    want = oracle_reduce(REAL_DIR / "test1.nc", "tas", "max", (0,))
    assert_same(active.max[0], want, "max")
    assert sorted(set(range(files)) - loader.pending) == [0, 1, 2]  # chunks 0-7
    active.count[...]
    assert active.index.loader is None, "every file read once the whole variable was asked for"


def test_parquet_reduce_warns_nothing(tmp_path):
    """No pandas deprecation or ResourceWarning (unclosed files) reaches the user."""
    import warnings

    index = activezarr.build_index(REAL_DIR / "test1.nc", tmp_path, format="parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with activezarr.Active(index, "tas") as active:
            active.mean[...]
        import gc

        gc.collect()


def test_rebuilding_parquet_replaces_it_whole(tmp_path):
    first = activezarr.build_index(REAL_DIR / "test1.nc", tmp_path, format="parquet")
    second = activezarr.build_index(REAL_DIR / "test1.nc", tmp_path, format="parquet")
    assert first == second
    leftovers = [p.name for p in Path(tmp_path).iterdir() if p.name.startswith(".test1")]
    assert leftovers == []
    assert activezarr.Active(second, "tas").count[...] == 98304


@pytest.mark.parametrize("libdeflate", [True, False])
def test_zlib_chunks_decode_the_same_with_and_without_libdeflate(tmp_path, monkeypatch, libdeflate):
    """libdeflate (optional, faster) and numcodecs' zlib give identical reductions."""
    from activezarr.backends import local

    monkeypatch.setattr(local, "_has_libdeflate", lambda: libdeflate)
    index = activezarr.build_index(REAL_DIR / "test1.nc", tmp_path)  # zlib + shuffle chunks
    active = activezarr.Active(index, "tas")
    decoders = active.local.codecs.decoders(tuple(active.index.codecs), 6 * 32 * 32 * 8)
    assert isinstance(decoders[0], local.LibdeflateZlib) is libdeflate
    for op in ("mean", "max", "count"):
        expected = oracle_reduce(REAL_DIR / "test1.nc", "tas", op, (slice(1, 9), slice(3, -3)))
        assert_same(active.reduce(op, (slice(1, 9), slice(3, -3))), expected, op)


@pytest.mark.parametrize("blosc", [True, False])
def test_shuffle_undone_as_numcodecs_does(tmp_path, monkeypatch, blosc):
    """The shuffle decoder (c-blosc's unshuffle, or numpy without it) gives numcodecs'
    ``Shuffle`` bytes for every element size and length, also into a given buffer; bytes past
    the last whole element are kept as HDF5 keeps them. Reductions of zlib +
    shuffle chunks (per chunk with blosc, per batch without) match the oracle."""
    import numcodecs

    from activezarr.backends import local

    if not blosc:
        monkeypatch.setattr(local, "_blosc_decompress", lambda: None)
    rng = np.random.default_rng(3)
    for k in (2, 3, 4, 8, 16):
        decoder = local._decoder({"id": "shuffle", "elementsize": k}, 0)
        assert isinstance(decoder, local.ByteUnshuffle)
        assert (decoder._blosc is not None) is blosc
        for n in (0, 1, 7, 18432, 1 << 18):
            raw = rng.integers(0, 256, n * k, dtype=np.uint8)
            shuffled = bytes(numcodecs.Shuffle(k).encode(raw))
            assert np.array_equal(decoder.decode(shuffled), raw)
            out = np.empty(n * k, np.uint8)
            decoder.decode(shuffled, out=out)
            assert np.array_equal(out, raw)
        # a length that is not whole elements: the trailing bytes stay as they are, as HDF5's
        # shuffle leaves them (netCDF-C's fletcher32 checksum after 8-byte elements)
        raw = rng.integers(0, 256, 5 * k + k - 1, dtype=np.uint8)
        shuffled = bytes(numcodecs.Shuffle(k).encode(raw[: 5 * k])) + raw[5 * k :].tobytes()
        assert np.array_equal(decoder.decode(shuffled), raw)
    index = activezarr.build_index(REAL_DIR / "test1.nc", tmp_path)
    with activezarr.Active(index, "tas") as active:
        for op in ("mean", "max", "count"):
            expected = oracle_reduce(REAL_DIR / "test1.nc", "tas", op, (slice(1, 9),), 0)
            assert_same(active.reduce(op, (slice(1, 9),), 0), expected, op)
