"""The index is a plain kerchunk reference set, and the catalog records where it came from.

* any kerchunk reader opens it: fsspec ReferenceFileSystem + zarr 3 (zarr_format 2) reads the
  same raw values as h5py, for every variable of every generated and real file;
* chunk references are ``[url, offset, length]`` matching h5py's chunk table, no inline data;
* the catalog (``catalog.db``) has the provenance (source, size, mtime, index, variables, created_at,
  version);
* an index written by kerchunk itself works with ``Active`` and matches the oracle.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.fixtures_data)
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pytest

from activezarr.index.hdf5 import virtual_chunks
from tests.fixtures_data import (  # noqa: F401
    GENERATED_FILES,
    REAL_DIR,
    generated_dir,
    generated_index,
    real_index,
)
from tests.generate import write_variable
from tests.oracle import (
    OPS,
    assert_reduces_like,
    assert_same,
    assert_same_read,
    oracle_atol,
    oracle_info,
    oracle_read,
    reduce_masked,
)
from tests.zarr_recipe import open_zarr, reference_store

REAL_FILES = sorted(p.name for p in REAL_DIR.glob("*.nc") if p.name != "emac.nc")
ALL_FILES = [("generated", name) for name in GENERATED_FILES] + [
    ("real", name) for name in REAL_FILES
]


def _index_and_source(kind, name, generated_dir, generated_index, real_index):
    if kind == "generated":
        return generated_index(name), generated_dir / name
    return real_index(name), REAL_DIR / name


def _numeric_variables(path: Path, index=None) -> list[str]:
    """The root group's numeric variables, less those ``index`` records as not indexed (with
    the reason ``info`` shows: filters it cannot decode, vlen types, external storage)."""
    skipped = set()
    if index is not None:
        skipped = set(json.loads(Path(index).read_text()).get("activezarr", {}).get("skipped", {}))
    with netCDF4.Dataset(path) as ds:
        return [
            n
            for n, v in ds.variables.items()
            if np.dtype(v.dtype).kind in "iuf" and n not in skipped
        ]


def _compact(dset: h5py.Dataset) -> bool:
    return dset.id.get_create_plist().get_layout() == h5py.h5d.COMPACT


def _same_raw(got: np.ndarray, want: np.ndarray) -> bool:
    """h5py's values (``want``) and what a reader got, over h5py's extent: a record variable
    shorter than its unlimited dimension is longer in the index (the rest reads as fill)."""
    if got.ndim != want.ndim or any(g < w for g, w in zip(got.shape, want.shape)):
        return False
    got = got[tuple(slice(0, n) for n in want.shape)]
    if want.dtype.kind == "f":
        return np.array_equal(got, want, equal_nan=True)
    return np.array_equal(got, want)


def _as_null_fill_reads(want: np.ndarray, got: np.ndarray, dset: h5py.Dataset) -> np.ndarray:
    """h5py's values as a zarr reader sees them through a null ``.zarray`` fill.

    kerchunk's fill for a netCDF variable without ``_FillValue`` is null, which zarr reads as
    0 in unwritten chunks (activezarr itself reads the HDF5 fill there, from its own member).
    """
    if not want.shape or got.ndim != want.ndim:
        return want
    got = got[tuple(slice(0, n) for n in want.shape)]
    return np.where((got == 0) & (want == dset.fillvalue), 0, want)


@pytest.mark.parametrize(("kind", "name"), ALL_FILES)
def test_zarr_reads_raw_values_like_h5py(kind, name, generated_dir, generated_index, real_index):
    index, source = _index_and_source(kind, name, generated_dir, generated_index, real_index)
    group = open_zarr(index)
    arrays = dict(group.arrays())
    expected_vars = _numeric_variables(source, index)
    assert set(expected_vars) <= set(arrays), f"missing {set(expected_vars) - set(arrays)}"
    failures = []
    with h5py.File(source, "r") as h5:
        for var in expected_vars:
            want = h5[var][()]
            got = arrays[var][...]
            if arrays[var].metadata.fill_value is None:
                want = _as_null_fill_reads(want, np.asarray(got), h5[var])
            if np.dtype(got.dtype).newbyteorder("=") != want.dtype.newbyteorder("="):
                failures.append(f"{var}: dtype {got.dtype} != h5py {want.dtype}")
            elif not _same_raw(np.asarray(got), np.asarray(want)):
                diff = np.argwhere(np.asarray(got) != np.asarray(want))[:3].tolist()
                failures.append(f"{var}: raw values differ from h5py at {diff}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("kind", "name"), ALL_FILES)
def test_refs_are_plain_kerchunk_v1(kind, name, generated_dir, generated_index, real_index):
    index, source = _index_and_source(kind, name, generated_dir, generated_index, real_index)
    doc = json.loads(Path(index).read_text())
    assert doc.get("version") == 1
    assert set(doc) <= {"version", "refs", "activezarr"}, sorted(doc)
    refs = doc["refs"]
    # the spec (and kerchunk's output) has metadata values as JSON text, never objects
    meta = {k: v for k, v in refs.items() if _is_meta(k)}
    assert meta and all(isinstance(v, str) for v in meta.values()), [
        k for k, v in meta.items() if not isinstance(v, str)
    ]
    zgroup = json.loads(refs[".zgroup"])
    assert zgroup == {"zarr_format": 2}
    source_abs = Path(source).resolve()
    failures = []
    with h5py.File(source, "r") as h5:
        for var in _numeric_variables(source, index):
            zarray = refs[f"{var}/.zarray"]
            zarray = json.loads(zarray) if isinstance(zarray, str) else zarray
            assert zarray["zarr_format"] == 2
            dset = h5[var]
            assert tuple(zarray["shape"]) == _netcdf_shape(source, dset), var
            table = _h5_chunk_table(dset)
            keys = {k for k in refs if k.startswith(f"{var}/") and not _is_meta(k)}
            if _compact(dset):  # data in the object header: inlined, as kerchunk does
                assert [type(refs[k]) for k in keys] == [str], var
                continue
            assert keys == set(table), f"{var}: chunk keys {sorted(keys)} != {sorted(table)}"
            for key in sorted(keys):
                ref = refs[key]
                if not (isinstance(ref, list) and len(ref) == 3):
                    failures.append(f"{key}: {str(ref)[:60]!r} is not [url, offset, length]")
                    continue
                url, offset, length = ref
                assert isinstance(offset, int) and isinstance(length, int), key
                assert _url_path(url) == source_abs, f"{key}: url {url!r} is not {source_abs}"
                if (offset, length) != table[key]:
                    failures.append(f"{key}: [{offset}, {length}] != h5py {table[key]}")
    assert not failures, "\n".join(failures[:20])


def _netcdf_shape(source, dset: h5py.Dataset) -> tuple[int, ...]:
    """The shape netCDF4 reports (a record variable has its unlimited dimension's length)."""
    with netCDF4.Dataset(source) as ds:
        return tuple(ds[dset.name].shape)


def _is_meta(key: str) -> bool:
    return key.rsplit("/", 1)[-1].startswith(".")


def _url_path(url: str) -> Path:
    """An absolute local path, bare or as a file:// URL (both are absolute references)."""
    url = url.removeprefix("file://")
    path = Path(url)
    assert path.is_absolute(), f"url {url!r} is not absolute"
    return path.resolve()


def _h5_chunk_table(dset: h5py.Dataset) -> dict[str, tuple[int, int]]:
    """Chunk key -> (byte offset, stored size), from h5py's own chunk index."""
    name = dset.name.lstrip("/")
    if dset.chunks is None:
        offset = dset.id.get_offset()
        if offset is None:  # never written: no reference
            return {}
        # contiguous data: virtual chunks of about 1 MB, one byte range each, in C order
        chunks = virtual_chunks(dset.shape, dset.dtype.itemsize)
        grid = [n // c for n, c in zip(dset.shape, chunks)]
        nbytes = int(np.prod(chunks)) * dset.dtype.itemsize
        return {
            f"{name}/" + (".".join(map(str, ij)) if dset.ndim else "0"): (
                offset + k * nbytes,
                nbytes,
            )
            for k, ij in enumerate(np.ndindex(*grid))
        }
    table = {}

    def visit(info):
        coords = [o // c for o, c in zip(info.chunk_offset, dset.chunks)]
        table[f"{name}/" + ".".join(map(str, coords))] = (info.byte_offset, info.size)

    dset.id.chunk_iter(visit)
    return table


# ------------------------------------------------------------------------------ catalog


def _catalog_rows(directory: Path) -> list[dict]:
    """The catalog's rows (``catalog.db``), JSON columns decoded, ``index`` as the file name."""
    import sqlite3

    con = sqlite3.connect(directory / "catalog.db")
    con.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in con.execute("SELECT * FROM files")]
    finally:
        con.close()
    for row in rows:
        row["index"] = row.pop("index_name")
        for key in ("fingerprint", "variables", "coords", "attrs"):
            row[key] = json.loads(row[key])
    return rows


def test_catalog_records_provenance(generated_dir, tmp_path):
    import activezarr

    source = generated_dir / "dims.nc"
    before = activezarr.__version__
    index = Path(activezarr.build_index(source, out=tmp_path))
    assert index.parent == tmp_path and index.suffix == ".json"
    assert index.stem == "dims", f"index {index.name} is not <stem>.json"
    entries = _catalog_rows(tmp_path)
    matching = [e for e in entries if str(source.resolve()) in json.dumps(e)]
    assert len(matching) == 1, entries
    entry = matching[0]
    st = os.stat(source)
    assert entry["size"] == st.st_size
    mtime = entry["mtime"]
    assert mtime is not None
    if isinstance(mtime, str):
        import datetime as dt

        mtime = dt.datetime.fromisoformat(mtime).timestamp()
    assert abs(float(mtime) - st.st_mtime) < 1.0
    assert index.name in str(entry["index"])
    assert set(GENERATED_FILES["dims.nc"].variables) <= set(entry["variables"])
    assert entry["created_at"]
    version_keys = [k for k in entry if "version" in k]
    assert version_keys and entry[version_keys[0]] == before, entry


def test_catalog_keeps_every_file(generated_dir, tmp_path):
    import activezarr

    for name in ("dims.nc", "scalar.nc", "packed.nc"):
        activezarr.build_index(generated_dir / name, out=tmp_path)
    activezarr.build_index(generated_dir / "dims.nc", out=tmp_path)  # re-index: no duplicate
    entries = _catalog_rows(tmp_path)
    for name in ("dims.nc", "scalar.nc", "packed.nc"):
        assert str((generated_dir / name).resolve()) in [e["source"] for e in entries]
    assert len(entries) == 3


def test_index_file_is_readable_like_any_new_file(generated_dir, tmp_path):
    """Atomic writes through mkstemp give 0600; an index is meant to be shared (0666 & ~umask)."""
    import activezarr

    index = Path(activezarr.build_index(generated_dir / "dims.nc", out=tmp_path))
    umask = os.umask(0)
    os.umask(umask)
    want = 0o666 & ~umask
    for path in (index, tmp_path / "catalog.db"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == want, f"{path.name} has mode {oct(mode)}, expected {oct(want)}"


# -------------------------------------------------------------------- kerchunk's own index


def _kerchunk_file(directory: Path) -> Path:
    """A zlib(+shuffle) file without fletcher32, with _FillValue'd data and one plain var."""
    path = directory / "kc.nc"
    rng = np.random.default_rng(7)
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", 7)
        ds.createDimension("lat", 5)
        ds.createDimension("lon", 6)
        dims = ("time", "lat", "lon")
        v = ds.createVariable("tas", "f4", dims, chunksizes=(3, 2, 4), zlib=True, fill_value=-9e9)
        data = rng.normal(280, 5, (7, 5, 6)).astype("f4")
        data[rng.random(data.shape) < 0.15] = -9e9
        v.set_auto_maskandscale(False)
        v[:] = data
        v = ds.createVariable(
            "pr", "i4", dims, chunksizes=(4, 5, 3), zlib=True, shuffle=False, fill_value=-1
        )
        ints = rng.integers(0, 1000, (7, 5, 6)).astype("i4")
        ints[rng.random(ints.shape) < 0.2] = -1
        v.set_auto_maskandscale(False)
        v[:] = ints
        # no _FillValue, fully written, no default fill in the data
        v = ds.createVariable("plain", "f8", dims, chunksizes=(7, 2, 2), zlib=True)
        v[:] = rng.normal(0, 1, (7, 5, 6))
    return path


@pytest.mark.parametrize("var", ["tas", "pr", "plain"])
def test_kerchunk_made_index_matches_oracle(tmp_path, var):
    from kerchunk.hdf import SingleHdf5ToZarr

    import activezarr

    path = _kerchunk_file(tmp_path)
    translator = SingleHdf5ToZarr(str(path), inline_threshold=0)
    try:
        refs = translator.translate()
    finally:
        close = getattr(translator, "close", None)
        if close:
            close()
    zarray = refs["refs"][f"{var}/.zarray"]
    zarray = json.loads(zarray) if isinstance(zarray, str) else zarray
    if var != "plain":
        assert zarray["fill_value"] is not None  # kerchunk moved _FillValue here
    info = oracle_info(path, var)
    failures = []
    with activezarr.Active(refs, var) as active:
        sels = [Ellipsis, (slice(1, 6), slice(None), slice(0, 5, 2)), (2,), (slice(-3, None), -1)]
        for sel in sels:
            data = oracle_read(path, var, sel)
            got = active[sel]
            try:
                assert_same_read(got, data, where=f"{var}[{sel}]")
            except AssertionError as exc:
                failures.append(str(exc))
            for op in OPS:
                for axis in [None] + ([0] if data.ndim else []):
                    try:
                        where = f"{var}[{sel}] axis={axis}"
                        assert_reduces_like(active, data, sel, op, axis, where=where)
                    except AssertionError as exc:
                        failures.append(str(exc))
    assert info["shape"] == (7, 5, 6)
    assert not failures, "\n".join(failures)


def test_kerchunk_made_index_from_json_file(tmp_path):
    """The same through a JSON file on disk, and as a flat version-0 dict."""
    from kerchunk.hdf import SingleHdf5ToZarr

    import activezarr

    path = _kerchunk_file(tmp_path)
    refs = SingleHdf5ToZarr(str(path), inline_threshold=0).translate()
    index = tmp_path / "kc.json"
    index.write_text(json.dumps(refs))
    expected = reduce_masked(oracle_read(path, "tas"), "mean")
    atol = oracle_atol(oracle_read(path, "tas"), "mean")
    for source in (index, str(index), refs["refs"]):
        with activezarr.Active(source, "tas") as active:
            assert_same(active.mean[...], expected, "mean", atol=atol, where=str(type(source)))


# ------------------------------------------------------------------ compact HDF5 datasets


def test_compact_dataset_is_indexed_with_its_values(tmp_path):
    """kerchunk reads compact data back as zeros when inlining is off; ours must not."""
    import activezarr

    path = tmp_path / "compact.h5"
    values = np.arange(10, dtype="i4") * 3 + 1
    with h5py.File(path, "w") as f:
        space = h5py.h5s.create_simple((10,))
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_layout(h5py.h5d.COMPACT)
        h5py.h5d.create(f.id, b"compact", h5py.h5t.STD_I32LE, space, plist)
        f["compact"][...] = values
    index = activezarr.build_index(path, out=tmp_path / "idx")
    assert np.array_equal(open_zarr(index)["compact"][...], values)
    with activezarr.Active(index, "compact") as active:
        got = active[...]
        assert np.array_equal(np.ma.getdata(got), values)
        assert int(active.sum[...]) == int(values.sum())


def test_write_variable_helper_roundtrip(tmp_path):
    """The helper the property tests use writes what it is given (oracle sanity)."""
    data = np.arange(12, dtype="f4").reshape(3, 4)
    mask = data % 5 == 0
    path = write_variable(tmp_path / "w.nc", data, mask=mask, fill_value=np.float32(-1))
    got = oracle_read(path, "v")
    assert np.array_equal(np.ma.getmaskarray(got), mask)
    assert np.array_equal(got.compressed(), data[~mask])


# ------------------------------------------------------------------ unsupported variables


def test_unsupported_variables_are_skipped_not_fatal(tmp_path):
    """Strings and compounds are skipped (with a warning or log line); the rest is indexed."""
    import warnings

    import activezarr

    path = tmp_path / "mixed.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("n", 4)
        ds.createDimension("nchar", 3)
        v = ds.createVariable("names", str, ("n",))
        v[:] = np.array(["a", "bb", "ccc", "dddd"], dtype=object)
        c = ds.createVariable("chars", "S1", ("n", "nchar"))
        c[:] = np.array([list("abc")] * 4, "S1")
        compound = ds.createCompoundType(np.dtype([("a", "i4"), ("b", "f8")]), "pair")
        p = ds.createVariable("pairs", compound, ("n",))
        p[:] = np.array([(1, 2.0)] * 4, dtype=[("a", "i4"), ("b", "f8")])
        x = ds.createVariable("x", "f8", ("n",), fill_value=-1.0)
        x[:] = [1.0, -1.0, 3.0, 4.0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = activezarr.build_index(path, out=tmp_path / "idx")
    with activezarr.Active(index, "x") as active:
        assert_same(active.sum[...], reduce_masked(oracle_read(path, "x"), "sum"), "sum")
    with pytest.raises(activezarr.ActiveZarrError, match="names"):
        activezarr.Active(index, "names")


# ------------------------------------------------------------ other kerchunk readers


def _xarray_raw(index, engine: str):
    import xarray as xr

    if engine == "kerchunk":
        return xr.open_dataset(
            str(index), engine="kerchunk", open_dataset_options={"decode_cf": False}
        )
    store = reference_store(index)
    return xr.open_zarr(store, zarr_format=2, consolidated=False, decode_cf=False)


@pytest.mark.parametrize("engine", ["kerchunk", "zarr"])
@pytest.mark.parametrize(("kind", "name"), ALL_FILES)
def test_xarray_opens_every_index(kind, name, engine, generated_dir, generated_index, real_index):
    """xarray reads our index through kerchunk's engine and through zarr, raw values = h5py."""
    index, source = _index_and_source(kind, name, generated_dir, generated_index, real_index)
    failures = []
    with _xarray_raw(index, engine) as ds, h5py.File(source, "r") as h5:
        for var in _numeric_variables(source, index):
            if var not in ds.variables:
                failures.append(f"{var}: not opened by xarray ({engine})")
            elif not _same_raw(
                got := np.asarray(ds[var].values),
                _as_null_fill_reads(h5[var][()], got, h5[var])
                if "_FillValue" not in h5[var].attrs
                else h5[var][()],
            ):
                failures.append(f"{var}: raw values differ from h5py")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("kind", "name"), ALL_FILES)
def test_virtualizarr_opens_every_index(kind, name, generated_dir, generated_index, real_index):
    """VirtualiZarr's kerchunk JSON parser: every variable, with our offsets and lengths."""
    pytest.importorskip("virtualizarr")
    from obspec_utils.registry import ObjectStoreRegistry
    from obstore.store import LocalStore
    from virtualizarr import open_virtual_dataset
    from virtualizarr.parsers import KerchunkJSONParser

    index, source = _index_and_source(kind, name, generated_dir, generated_index, real_index)
    registry = ObjectStoreRegistry({"file://": LocalStore()})
    refs = json.loads(Path(index).read_text())["refs"]
    # VirtualiZarr 2.5 cannot hold a 0-d array without chunks (it turns it into its fill
    # value and then refuses it, whoever wrote the index): leave such variables out
    unwritten_scalars = [
        k.split("/")[0]
        for k, v in refs.items()
        if k.endswith("/.zarray") and json.loads(v)["shape"] == [] and k[:-7] + "0" not in refs
    ]
    # nor can it read inlined chunks (zarr-developers/VirtualiZarr#489): compact datasets;
    # and xarray's decoding in it refuses a 2-element scale_factor (kerchunk's index too)
    unwritten_scalars += ["scale_two_values"] + [
        k.split("/")[0]
        for k, v in refs.items()
        if isinstance(v, str)
        and not _is_meta(k)
        and "/" in k
        and k.split("/")[0] not in unwritten_scalars
    ]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numcodecs' v3 wrappers warn on every codec
        vds = open_virtual_dataset(
            f"file://{Path(index).resolve()}",
            registry=registry,
            parser=KerchunkJSONParser(skip_variables=unwritten_scalars),
            loadable_variables=[],
        )
    failures = []
    with h5py.File(source, "r") as h5:
        for var in set(_numeric_variables(source, index)) - set(unwritten_scalars):
            if var not in vds.variables:
                failures.append(f"{var}: not opened by VirtualiZarr")
                continue
            manifest = vds[var].data.manifest
            if tuple(vds[var].shape) != _netcdf_shape(source, h5[var]):
                failures.append(f"{var}: shape {vds[var].shape} != {h5[var].shape}")
            ours = sorted(
                (v[1], v[2])
                for k, v in refs.items()
                if k.startswith(f"{var}/") and not _is_meta(k) and isinstance(v, list)
            )
            theirs = sorted(
                (int(o), int(n))
                for o, n, p in zip(
                    manifest._offsets.ravel(), manifest._lengths.ravel(), manifest._paths.ravel()
                )
                if str(p) not in ("", "__inlined__")
            )
            if ours != theirs:
                failures.append(f"{var}: VirtualiZarr's byte ranges differ from the index")
    assert not failures, "\n".join(failures)


# ------------------------------------------------------------ indexes of earlier versions

OLD_INDEX = Path(__file__).parent / "fixtures/old_index"


def old_format_index(directory: Path) -> Path:
    """The fixture written by activezarr 0.1.0 (metadata as JSON objects), moved to ``directory``.

    Its chunk URLs name ``/FIXTURE_DIR/objects.nc``; the copy points them at ``directory``.
    """
    import shutil

    shutil.copy(OLD_INDEX / "objects.nc", directory / "objects.nc")
    text = (OLD_INDEX / "objects.json").read_text().replace("/FIXTURE_DIR", str(directory))
    index = directory / "objects.json"
    index.write_text(text)
    return index


def test_old_format_index_still_loads(tmp_path):
    """Indexes from before metadata became JSON strings load and reduce like new ones."""
    import activezarr

    old = old_format_index(tmp_path)
    refs = json.loads(old.read_text())["refs"]
    assert isinstance(refs["tas/.zarray"], dict)  # the fixture really is the old form
    source = tmp_path / "objects.nc"
    new = activezarr.build_index(source, out=tmp_path / "new", catalog=False)
    for var in ("tas", "time"):
        data = oracle_read(source, var)
        with activezarr.Active(old, var) as a_old, activezarr.Active(new, var) as a_new:
            assert_same_read(a_old[...], data, where=f"old {var}")
            for op in OPS:
                want = reduce_masked(data, op, None)
                atol = oracle_atol(data, op, None)
                assert_same(getattr(a_old, op)[...], want, op, atol=atol, where=f"old {var}")
                assert_same(getattr(a_new, op)[...], want, op, atol=atol, where=f"new {var}")
    assert np.array_equal(open_zarr(old)["tas"][...], open_zarr(new)["tas"][...])
