"""Hostile indexes beyond the structural checks of ``test_index_validation.py``: what a chunk
decodes to, codec parameters, odd dtypes and fill values, attributes, duplicate keys, NaN
literals, huge inline data, hostile parquet columns, local files named by remote indexes.

Each case ends in one ``ActiveZarrError`` naming the index (``IndexLoadError`` at load,
``ChunkReadError`` for a chunk's bytes, ``UnsupportedVariableError`` for a dtype) or in the
right answer — never a wrong number, never memory the index's claims alone allocate.
"""

# ruff: noqa: F811  (pytest fixtures imported by name)
from __future__ import annotations

import base64
import bz2
import copy
import gzip
import json
import lzma
import os
import tracemalloc
import zlib
from pathlib import Path

import numcodecs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import activezarr
from activezarr import ActiveZarrError, IndexLoadError, UnsupportedVariableError
from activezarr.errors import ChunkReadError
from tests.cli_run import run_cli
from tests.oracle import oracle_read, reduce_masked
from tests.test_index_validation import good, mutated, refused, with_zarray, write  # noqa: F401

BOMB = 32 * 2**20  # zeros a bomb expands to; its chunk is 2x3 float32 (24 bytes)


def _numcodecs(codec_id: str):
    return lambda data: bytes(numcodecs.get_codec({"id": codec_id}).encode(data))


COMPRESS = {
    "zlib": zlib.compress,
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "lzma": lzma.compress,
    "zstd": _numcodecs("zstd"),
    "blosc": _numcodecs("blosc"),
    "lz4": _numcodecs("lz4"),
}


def with_chunk(good, codec: str, payload: bytes, name: str) -> Path:
    """The good index with ``codec`` as its compressor and chunk 0.0 = ``payload``, stored
    in a file beside the source (where the index may read)."""
    blob = good["source"].parent / f"{name}.bin"
    blob.write_bytes(payload)
    doc = with_zarray(good, compressor={"id": codec}, filters=None)
    doc["refs"]["v/0.0"] = [str(blob), 0, len(payload)]
    return write(good, doc)


# ---------------------------------------------------------------------- what a chunk decodes to
@pytest.mark.parametrize("codec", sorted(COMPRESS))
def test_decompression_bomb_is_refused_before_it_is_allocated(good, codec):
    """A 24-byte chunk whose stream expands to 32 MiB: refused, and the read never holds more
    than a few MiB (tracemalloc sees every Python and numpy allocation)."""
    index = with_chunk(good, codec, COMPRESS[codec](bytes(BOMB)), f"bomb-{codec}")
    with activezarr.Active(index, "v", check_stale=False) as a:
        tracemalloc.start()
        try:
            with pytest.raises(ChunkReadError, match="decompression bomb|decoded size") as info:
                a.mean[0:2, 0:3]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < BOMB // 2, f"{peak:,} bytes allocated"  # lzma keeps an 8 MiB dictionary
    assert "'v'" in str(info.value) and str(index) in str(info.value)


@pytest.mark.parametrize("codec", sorted(COMPRESS))
def test_chunk_decoding_to_the_wrong_size(good, codec):
    """20 or 28 bytes where the chunk holds 24: one ChunkReadError, nothing reduced."""
    for n in (20, 28):
        data = np.arange(n, dtype="u1").tobytes()
        index = with_chunk(good, codec, COMPRESS[codec](data), f"size-{codec}-{n}")
        with (
            activezarr.Active(index, "v", check_stale=False) as a,
            pytest.raises(ChunkReadError, match="chunk") as info,
        ):
            a.sum[0:2, 0:3]
        assert "'v'" in str(info.value)


@pytest.mark.parametrize("codec", ["zlib", "gzip", "bz2", "lzma"])
def test_truncated_stream_is_an_error_not_data(good, codec):
    whole = COMPRESS[codec](np.arange(6, dtype="f4").tobytes())
    index = with_chunk(good, codec, whole[: len(whole) - 3], f"cut-{codec}")
    with (
        activezarr.Active(index, "v", check_stale=False) as a,
        pytest.raises(ChunkReadError, match="ends early|could not be decoded"),
    ):
        a.mean[0:2, 0:3]


CODEC_PARAMETERS = {
    "shuffle elementsize 3 for f4": ({"id": "shuffle", "elementsize": 3}, "elementsize"),
    "shuffle elementsize 8 for f4": ({"id": "shuffle", "elementsize": 8}, "elementsize"),
    "zlib level 99": ({"id": "zlib", "level": 99}, "level"),
    "zlib level '9'": ({"id": "zlib", "level": "9"}, "level|codec"),
    "zlib level true": ({"id": "zlib", "level": True}, "level"),
    "gzip level -5": ({"id": "gzip", "level": -5}, "level"),
    "blosc clevel 99": ({"id": "blosc", "clevel": 99}, "clevel"),
    "blosc typesize -1": ({"id": "blosc", "typesize": -1}, "typesize"),
    "blosc shuffle 7": ({"id": "blosc", "shuffle": 7}, "shuffle"),
    "blosc cname": ({"id": "blosc", "cname": "nonesuch"}, "cname"),
    "zstd level 100": ({"id": "zstd", "level": 100}, "level"),
}


@pytest.mark.parametrize("case", sorted(CODEC_PARAMETERS))
def test_codec_parameters_out_of_range(good, case):
    config, says = CODEC_PARAMETERS[case]
    filters = [config] if config["id"] == "shuffle" else None
    compressor = {"id": "zlib"} if filters else config
    doc = with_zarray(good, filters=filters, compressor=compressor)
    refused(write(good, doc), says)


# ------------------------------------------------------------------------ dtypes and fills
def tiny(dtype, raw: bytes, fill=None, attrs=None, zarray_text: str | None = None) -> dict:
    """A one-variable reference dict: ``v`` of 6 values in one uncompressed inline chunk."""
    zarray = {
        "zarr_format": 2,
        "shape": [6],
        "chunks": [6],
        "dtype": dtype,
        "fill_value": fill,
        "order": "C",
        "compressor": None,
        "filters": None,
    }
    return {
        "version": 1,
        "refs": {
            ".zgroup": '{"zarr_format": 2}',
            "v/.zarray": zarray_text or json.dumps(zarray),
            "v/.zattrs": json.dumps(attrs or {"_ARRAY_DIMENSIONS": ["x"]}),
            "v/0": "base64:" + base64.b64encode(raw).decode(),
        },
    }


@pytest.mark.parametrize(
    "dtype", ["<U5", "V8", "<M8[ns]", "<m8[s]", "<c8", "|S4", "|b1", "<U1", "|S1"]
)
def test_non_numeric_dtypes_are_unsupported(dtype):
    raw = bytes(6 * np.dtype(dtype).itemsize)
    with pytest.raises(UnsupportedVariableError, match="numeric"):
        activezarr.Active(tiny(dtype, raw), "v")


@pytest.mark.parametrize("dtype", ["|O", [["a", "<f4"]], "<f4x", "O", "|O8"])
def test_object_and_structured_dtypes_are_refused_at_load(dtype):
    with pytest.raises(IndexLoadError, match="dtype"):
        activezarr.Active(tiny(dtype, bytes(24)), "v")


@pytest.mark.parametrize("dtype", [">f2", "<f2", ">i8", ">u2", "|i1", ">f8"])
def test_odd_byte_orders_and_sizes_give_numpy_answers(dtype):
    values = (np.arange(6) * 3 - 5).astype(dtype)
    if dtype.startswith(">u"):
        values = (np.arange(6) * 1000).astype(dtype)
    with activezarr.Active(tiny(dtype, values.tobytes()), "v") as a:
        assert float(a.mean[...]) == pytest.approx(float(values.astype("f8").mean()))
        assert float(a.max[...]) == float(values.max())
        np.testing.assert_array_equal(np.ma.getdata(a[...]), values)


@pytest.mark.parametrize(
    ("dtype", "fill"),
    [
        ("<f4", "abc"),
        ("<f4", True),
        ("<f4", [1]),
        ("<f4", {"a": 1}),
        ("<i4", 1.5),
        ("<i4", "NaN"),
        ("<i4", 2**40),
        ("|u1", -1),
        ("<i2", 1e400),
    ],
)
def test_fill_value_of_the_wrong_type(dtype, fill):
    with pytest.raises(IndexLoadError, match="fill_value"):
        activezarr.Active(tiny(dtype, bytes(6 * np.dtype(dtype).itemsize), fill), "v")


def test_nan_literals():
    """``NaN`` written as a bare literal (not JSON, but Python's json reads it): a float fill
    NaN is a NaN fill; in an int .zarray, in a shape or in a chunk reference it is refused."""
    raw = np.array([1, np.nan, 3, 4, 5, 6], "f4").tobytes()
    text = json.dumps(json.loads(tiny("<f4", raw)["refs"]["v/.zarray"])).replace("null", "NaN", 1)
    assert '"fill_value": NaN' in text
    with activezarr.Active(tiny("<f4", raw, zarray_text=text), "v") as a:
        assert int(a.count[...]) == 5 and float(a.sum[...]) == 19.0
    for bad in (text.replace("<f4", "<i4"), text.replace('[6], "chunks"', '[NaN], "chunks"')):
        with pytest.raises(IndexLoadError):
            activezarr.Active(tiny("<f4", raw, zarray_text=bad), "v")
    doc = tiny("<f4", raw)
    doc["refs"]["v/0"] = ["/nowhere/x.nc", float("nan"), 24]
    text = json.dumps(doc)  # Python writes the bare NaN literal
    assert "NaN" in text
    with pytest.raises(IndexLoadError, match="integers"):
        activezarr.Active(json.loads(text), "v")


def test_duplicate_keys_in_metadata_are_refused():
    raw = np.arange(6, dtype="f4").tobytes()
    text = json.dumps(json.loads(tiny("<f4", raw)["refs"]["v/.zarray"]))
    twice = text[:-1] + ', "dtype": "<i8"}'
    with pytest.raises(IndexLoadError, match="appears twice"):
        activezarr.Active(tiny("<f4", raw, zarray_text=twice), "v")
    doc = tiny("<f4", raw, attrs={"_ARRAY_DIMENSIONS": ["x"]})
    doc["refs"]["v/.zattrs"] = '{"scale_factor": 2.0, "scale_factor": 1000.0}'
    with pytest.raises(IndexLoadError, match="appears twice"):
        activezarr.Active(doc, "v")


def test_huge_and_deep_attributes(tmp_path):
    """A 5 MB dimension name and attribute, nesting 500 deep (read) and 100,000 deep (refused):
    Active answers, info prints, the CLI shows no traceback."""
    raw = np.arange(6, dtype="f4").tobytes()
    deep: object = 1
    for _ in range(500):
        deep = [deep]
    attrs = {"_ARRAY_DIMENSIONS": ["x" * 5_000_000], "history": "y" * 5_000_000, "deep": deep}
    index = tmp_path / "huge.json"
    index.write_text(json.dumps(tiny("<f4", raw, attrs=attrs)))
    with activezarr.Active(index, "v", allow_paths=[tmp_path]) as a:
        assert float(a.mean[...]) == 2.5
        assert a.dimensions == ("x" * 5_000_000,)
    done = run_cli("info", index)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-500:]
    doc = tiny("<f4", raw)
    doc["refs"]["v/.zattrs"] = '{"deep": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(IndexLoadError, match="zattrs"):
        activezarr.Active(doc, "v")


def test_huge_inline_chunk_is_refused_before_decoding(good):
    """40 MB of base64 for a 24-byte chunk: refused at load, without decoding it."""
    doc = mutated(good, v__0_0="base64:" + "A" * 40_000_000)
    index = write(good, doc)
    tracemalloc.start()
    try:
        with pytest.raises(IndexLoadError, match="inline data"):
            activezarr.Active(index, "v")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 400 * 2**20  # the parsed document itself (40 MB string, parse copies)
    for raw in (bytes(25), bytes(10_000)):  # uncompressed: exactly 24 bytes, or refused
        doc = tiny("<f4", raw)
        with pytest.raises(ActiveZarrError):
            activezarr.Active(doc, "v").mean[...]


# ------------------------------------------------------------------------- parquet columns
def _parquet_index(tmp_path):
    from tests.generate import write_variable

    source = write_variable(tmp_path / "p.nc", np.arange(40.0).reshape(4, 10), chunks=(2, 5))
    return activezarr.build_index(source, out=tmp_path / "idx", format="parquet")


@pytest.mark.parametrize(
    "column", ["offset as text", "size as float", "path as ints", "raw huge", "path nested"]
)
def test_parquet_with_hostile_columns(tmp_path, column):
    import pyarrow as pa
    import pyarrow.parquet as pq

    index = _parquet_index(tmp_path)
    part = next((index / "v").glob("refs.*.parq"))
    table = pq.read_table(part)
    n = table.num_rows
    if column == "offset as text":
        table = table.set_column(1, "offset", pa.array([str(v) for v in table["offset"]]))
    elif column == "size as float":
        table = table.set_column(2, "size", pa.array([float(v.as_py()) for v in table["size"]]))
    elif column == "path as ints":
        table = table.set_column(0, "path", pa.array(list(range(n))))
    elif column == "path nested":
        table = table.set_column(0, "path", pa.array([["a"]] * n))
    else:
        raw = [b"x" * 100_000] + [None] * (n - 1)
        paths = [None] + table["path"].to_pylist()[1:]
        table = table.set_column(0, "path", pa.array(paths, pa.string()))
        table = table.set_column(3, "raw", pa.array(raw, pa.binary()))
    pq.write_table(table, part)
    with pytest.raises(IndexLoadError, match="parquet|absolute|outside") as info:
        activezarr.Active(index, "v", check_stale=False).mean[...]
    assert str(index) in str(info.value)


# ------------------------------------------------------------------- remote indexes, files
def test_remote_index_may_not_name_local_files(nginx_server, good):
    """An index fetched over HTTPS that names /etc/passwd (and records it as its source, so
    that a local index would be confined to /etc): refused, even without the freshness
    check, unless the user allows the directory."""
    doc = copy.deepcopy(good["doc"])
    doc["activezarr"]["sources"] = {"file:///etc/passwd": {"size": 1, "mtime": 0.0}}
    doc["refs"]["v/0.0"] = ["file:///etc/passwd", 0, 24]
    name = "hostile-remote.json"
    (Path(nginx_server.root) / name).write_text(json.dumps(doc))
    url = f"{nginx_server.url}/{name}"
    so = {"ssl": nginx_server.ca_file}
    with pytest.raises(IndexLoadError, match="outside") as info:
        activezarr.Active(url, "v", storage_options=so, check_stale=False)
    assert url in str(info.value)


def _recording(good, tmp_path, fingerprint: dict, chunk: str) -> Path:
    """The good index, recording ``secret/pw.bin`` (a file under tmp_path that its author
    claims with ``fingerprint``) as its source, chunk 0.0 pointing at ``secret/<chunk>``."""
    secret = tmp_path / "secret"
    secret.mkdir(exist_ok=True)
    payload = zlib.compress(np.arange(6, dtype="f4").tobytes())  # the variable is zlib
    for name in ("pw.bin", "data.bin"):
        (secret / name).write_bytes(payload)
    doc = mutated(good, v__0_0=[str(secret / chunk), 0, len(payload)])
    doc["activezarr"]["sources"][str(secret / "pw.bin")] = fingerprint  # the real one kept
    return write(good, doc)


@pytest.mark.parametrize("chunk", ["pw.bin", "data.bin", "link"])
@pytest.mark.parametrize("check_stale", [False, True])
def test_recorded_source_must_be_real_to_widen_reads(good, tmp_path, chunk, check_stale):
    """An index that records a file it does not know (a made-up fingerprint) to be confined to
    that file's directory: refused whether or not the freshness check runs, for that file, a
    file beside it and a symlink leading there; the user's allow_paths still lets it read."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "link").symlink_to(tmp_path / "secret" / "data.bin")
    target = "../elsewhere/link" if chunk == "link" else chunk
    index = _recording(good, tmp_path, {"size": 400, "mtime": 0.0}, target)
    if chunk == "link":  # confined to elsewhere/ by a made-up source there, leading to secret/
        doc = json.loads(index.read_text())
        doc["refs"]["v/0.0"][0] = str(tmp_path / "elsewhere" / "link")
        del doc["activezarr"]["sources"][str(tmp_path / "secret" / "pw.bin")]
        doc["activezarr"]["sources"][str(tmp_path / "elsewhere" / "x.nc")] = {"size": 1}
        index.write_text(json.dumps(doc))
    with pytest.raises(ActiveZarrError) as info:
        activezarr.Active(index, "v", check_stale=check_stale).mean[0:2, 0:3]
    message = str(info.value)
    assert "allow_paths" in message and "\n" not in message, message
    if chunk != "link":
        assert "with or without check_stale" in message, message
        with activezarr.Active(index, "v", check_stale=False, allow_paths=[tmp_path]) as a:
            assert float(a.mean[0:2, 0:3]) == 2.5


def test_recorded_source_touched_but_unchanged_still_widens(good, tmp_path):
    """The same source with a new mtime and the same contents: read with check_stale=False
    (the contents are what the index's author knew), refused as stale with the check."""
    from activezarr.errors import StaleIndexError
    from activezarr.index.sources import open_source

    index = _recording(good, tmp_path, {}, "pw.bin")
    doc = json.loads(index.read_text())
    pw = tmp_path / "secret" / "pw.bin"
    doc["activezarr"]["sources"][str(pw)] = open_source(pw).recorded_fingerprint()
    index.write_text(json.dumps(doc))
    stat = pw.stat()
    os.utime(pw, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with activezarr.Active(index, "v", check_stale=False) as a:
        assert float(a.mean[0:2, 0:3]) == 2.5
    with pytest.raises(StaleIndexError, match="mtime was"):
        activezarr.Active(index, "v")


def test_credentials_in_an_index_are_not_printed(tmp_path):
    secret = "s3cr3t-Zq8vN3kT0pX"
    raw = np.arange(6, dtype="f4").tobytes()
    doc = tiny("<f4", raw)
    doc["refs"]["v/0"] = [f"https://me:{secret}@127.0.0.1:9/x.nc", 0, 24]
    index = tmp_path / "creds.json"
    index.write_text(json.dumps(doc))
    for args in (["info", str(index)], ["reduce", str(index), "v", "--op", "mean"]):
        done = run_cli(*args, *(["--no-check-stale"] if args[0] == "reduce" else []))
        assert secret not in done.stdout + done.stderr, (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr


# -------------------------------------------------------------------------- the fuzzer
CODEC_CONFIGS = st.fixed_dictionaries(
    {"id": st.sampled_from(["zlib", "gzip", "bz2", "lzma", "zstd", "blosc", "lz4", "shuffle"])},
    optional={
        "level": st.integers(-3, 30) | st.booleans() | st.text(max_size=2),
        "clevel": st.integers(-3, 30),
        "elementsize": st.integers(-1, 9),
        "typesize": st.integers(-2, 300),
        "cname": st.sampled_from(["lz4", "zstd", "nope"]),
    },
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    codecs=st.lists(CODEC_CONFIGS, min_size=0, max_size=3),
    payload=st.binary(max_size=64) | st.sampled_from(["bomb", "zeros", "values"]),
    dtype=st.sampled_from(["<f4", ">f4", "<i2", "|u1", "<f8", ">i8"]),
)
def test_fuzzed_chunks_and_codecs(good, codecs, payload, dtype):
    """Any codec pipeline (parameters in and out of range) over any chunk bytes (random,
    a bomb, the right bytes): the right answer or one ActiveZarrError."""
    shape = (2, 3)
    values = (np.arange(6) + 1).astype(dtype).reshape(shape)
    if payload == "bomb":
        data = zlib.compress(bytes(4 * 2**20))
    elif payload == "zeros":
        data = bytes(values.nbytes)
    elif payload == "values":
        data = values.tobytes()
        try:
            for config in codecs:
                data = bytes(numcodecs.get_codec(dict(config)).encode(data))
        except Exception:  # noqa: BLE001 - a config numcodecs cannot encode with
            return
    else:
        data = payload
    doc = tiny(dtype, b"")
    zarray = json.loads(doc["refs"]["v/.zarray"])
    zarray.update(shape=list(shape), chunks=list(shape), filters=codecs or None, compressor=None)
    doc["refs"]["v/.zarray"] = json.dumps(zarray)
    doc["refs"]["v/0.0"] = "base64:" + base64.b64encode(data).decode()
    del doc["refs"]["v/0"]
    try:
        with activezarr.Active(doc, "v") as a:
            result = a.sum[...]
    except ActiveZarrError:
        return
    if payload == "values":
        assert float(result) == float(values.astype("f8").sum())


# ------------------------------------------ netCDF's zlib + shuffle, chunks decoded in a loop
@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    """A zlib + shuffle float32 variable in 32 KB chunks (the size decoded by libdeflate
    and blosc in one loop), its index and its values."""
    from tests.generate import write_variable

    root = tmp_path_factory.mktemp("shuffled")
    data = np.random.default_rng(3).normal(280, 5, (12, 64, 128)).astype("f4")  # not "small"
    nc = write_variable(root / "s.nc", data, chunks=(1, 64, 128), zlib=True, shuffle=True)
    return nc, activezarr.build_index(nc, out=root), data


def _shuffled_bytes(values: np.ndarray) -> bytes:
    return values.view(np.uint8).reshape(-1, 4).T.tobytes()


def _with_chunk_2(shuffled, payload: bytes, name: str) -> Path:
    """The index with chunk 2.0.0 replaced by ``payload`` (a file beside the source)."""
    nc, index, _ = shuffled
    blob = nc.parent / f"{name}.bin"
    blob.write_bytes(payload)
    doc = json.loads(Path(index).read_text())
    doc["refs"]["v/2.0.0"] = [str(blob), 0, len(payload)]
    out = nc.parent / f"{name}.json"
    out.write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize(
    "case, make, match",
    [
        ("garbage", lambda v: os.urandom(4000), "could not be decoded"),
        ("short", lambda v: zlib.compress(_shuffled_bytes(v[:-1, :])), "decodes to|bytes"),
        ("bomb", lambda v: zlib.compress(bytes(BOMB)), "decompression bomb"),
        ("trailing bytes", lambda v: zlib.compress(_shuffled_bytes(v)) + b"tail", None),
        ("level 9", lambda v: zlib.compress(_shuffled_bytes(v), 9), None),
    ],
)
def test_zlib_shuffle_chunks_one_bad_among_good(shuffled, case, make, match):
    """One chunk among 11 good ones: refused with the chunk named, or (a stream zlib
    reads whole, whatever follows it) the right answer."""
    nc, _, data = shuffled
    index = _with_chunk_2(shuffled, make(data[2]), case.replace(" ", "-"))
    with activezarr.Active(index, "v", check_stale=False) as a:
        if match is None:
            got = a.reduce("sum", (), axis=0)
            want = reduce_masked(oracle_read(nc, "v", Ellipsis), "sum", 0)
            np.testing.assert_allclose(got, want, rtol=1e-6)
            return
        with pytest.raises(ChunkReadError, match=match) as info:
            a.mean[...]
    assert "'v'" in str(info.value)
