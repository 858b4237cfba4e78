"""kerchunk's parquet reference format, for indexes too large for JSON; read and written with pyarrow.

Layout (as fsspec's ``LazyReferenceMapper`` reads and kerchunk writes it): a directory with
``.zmetadata`` = ``{"metadata": {every .z* key}, "record_size": N}`` and, per array,
``<var>/refs.<k>.parq`` files of ``N`` rows each (the last one may be shorter); row ``r`` of
file ``k`` is chunk ``k*N + r`` in C order of the chunk grid, with columns ``path`` (plain or
dictionary-encoded strings), ``offset``, ``size``, ``raw`` (null path and raw: the chunk was
never written; null path with raw bytes: an inline chunk).

Reading is lazy: opening a variable reads only the ``path`` column of each file (dictionary
pages and run lengths: bytes for a single-source index), which gives every URL the index
names; the offsets, sizes and inline bytes of a file are read when a selection first touches
one of its chunks (``VariableIndex.load_chunks``), so a small selection of a huge index reads
one or two files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexBuildError, IndexLoadError
from .load import INLINE, MISSING, VariableIndex, from_table
from .refs import MEMBER
from .validate import MAX_CHUNK_BYTES

RECORD_SIZE = 100_000
INSTALL_HINT = "pip install 'activezarr[parquet]' (or pip install pyarrow)"


def _pyarrow(error: type[Exception]):
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise error(f"parquet indexes need pyarrow: {INSTALL_HINT}") from None
    return pyarrow, pyarrow.parquet


def is_parquet(location: str) -> bool:
    path = Path(location)
    return location.endswith((".parq", ".parquet")) or (path / ".zmetadata").is_file()


# -- writing ------------------------------------------------------------------------------


def write_parquet(target: Path, translation, record_size: int = RECORD_SIZE) -> None:
    """Write the translation as a parquet reference directory, replacing ``target`` atomically."""
    _pyarrow(IndexBuildError)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        facts = {"format": 1, "variables": {v.name: v.extra for v in translation.variables}}
        if translation.skipped_names:
            facts["skipped"] = translation.skipped_names
        meta = {"metadata": translation.meta, "record_size": record_size, MEMBER: facts}
        (tmp / ".zmetadata").write_text(json.dumps(meta))
        for ds in translation.variables:
            _write_variable(tmp, from_table(ds, str(target)), record_size)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, target: Path) -> None:
    """Replace ``target`` by ``tmp`` so that readers see the old or the new, never a mix."""
    os.chmod(tmp, 0o755)
    if not target.exists():
        os.replace(tmp, target)
        return
    old = target.with_name(f".{target.name}.old")
    _remove(old)
    os.replace(target, old)
    os.replace(tmp, target)
    _remove(old)


def _remove(path: Path) -> None:
    """Remove ``path``, a directory or a file, if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _write_variable(root: Path, var: VariableIndex, record_size: int) -> None:
    """One ``refs.<k>.parq`` per ``record_size`` chunks, padded to whole records as kerchunk's."""
    pa, pq = _pyarrow(IndexBuildError)
    folder = root / var.name
    folder.mkdir(parents=True, exist_ok=True)
    n = max(var.n_chunks, 1) if var.shape or var.chunks == () else var.n_chunks
    ids = var.url_ids[:n] if var.url_ids.size else np.full(n, MISSING, np.int32)
    offsets, sizes = var.offsets, var.sizes
    if offsets.size < n:  # an empty variable (a dimension of length 0): one empty record
        offsets = sizes = np.zeros(n, np.uint64)
    urls = pa.array(var.urls, pa.string())
    for k, start in enumerate(range(0, n, record_size)):
        stop = min(start + record_size, n)
        pad = record_size - (stop - start)
        part = np.r_[ids[start:stop], np.full(pad, MISSING, np.int32)]
        path = pa.DictionaryArray.from_arrays(
            pa.array(np.maximum(part, 0), pa.int32(), mask=part < 0), urls
        )
        raw = [var.inline.get(i) for i in range(start, stop)] + [None] * pad
        table = pa.table(
            {
                "path": path,
                "offset": np.r_[offsets[start:stop].astype(np.int64), np.zeros(pad, np.int64)],
                "size": np.r_[sizes[start:stop].astype(np.int64), np.zeros(pad, np.int64)],
                "raw": pa.array(raw, pa.binary()),
            }
        )
        pq.write_table(table, folder / f"refs.{k}.parq", compression="zstd")


# -- reading ------------------------------------------------------------------------------


def read_metadata(location: str) -> dict[str, Any]:
    path = Path(location) / ".zmetadata"
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexLoadError(
            f"parquet index {location} has no readable .zmetadata ({exc})"
        ) from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("metadata"), dict):
        raise IndexLoadError(f"parquet index {location}: .zmetadata has no 'metadata' mapping")
    return meta


def load_parquet_variable(location: str, name: str) -> VariableIndex:
    """One variable of a parquet index: metadata and URLs now, chunk rows on first use."""
    from .load import variable_facts, variable_from_meta

    _pyarrow(IndexLoadError)
    meta = read_metadata(location)
    var = variable_from_meta(meta["metadata"], name, location, variable_facts(meta).get(name))
    record_size = meta.get("record_size")
    if not isinstance(record_size, int) or record_size <= 0:
        raise IndexLoadError(
            f"parquet index {location}: .zmetadata record_size {record_size!r} is not a "
            "positive integer"
        )
    files: dict[int, Path] = {}
    for f in (Path(location) / name).glob("refs.*.parq"):
        number = f.name.split(".")[1]
        if number.isdigit():
            files[int(number)] = f
    if files:
        var.loader = _RowLoader(var, files, record_size)
    return var


class _RowLoader:
    """Fills a ``VariableIndex``'s chunk table from parquet files, one whole file at a time."""

    def __init__(self, var: VariableIndex, files: dict[int, Path], record_size: int) -> None:
        self.var = var
        self.files = files
        self.record_size = record_size
        self.pending = set(files)
        self.url_table: dict[str, int] = {}
        self.lock = threading.Lock()
        self.codes: dict[int, np.ndarray] = {k: self._path_ids(k) for k in sorted(files)}
        var.urls = list(self.url_table)

    def _read(self, k: int, columns: list[str]):
        _, pq = _pyarrow(IndexLoadError)
        path = self.files[k]
        try:
            with pq.ParquetFile(path) as pf:
                return pf.read(columns=columns)
        except (OSError, ValueError, KeyError) as exc:  # pyarrow.ArrowException is an OSError
            raise IndexLoadError(f"parquet index file {path} cannot be read ({exc})") from exc

    def _path_ids(self, k: int) -> np.ndarray:
        """Global URL ids (``MISSING`` where null) of file ``k``'s rows."""
        pa, _ = _pyarrow(IndexLoadError)
        column = self._read(k, ["path"]).column("path").combine_chunks()
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if not (
            pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)
        ):
            raise IndexLoadError(
                f"parquet index file {self.files[k]}: column 'path' is {column.type}, not strings"
            )
        if not pa.types.is_dictionary(column.type):
            column = column.dictionary_encode()
        urls = column.dictionary.to_pylist()
        lut = np.array([self.url_table.setdefault(str(u), len(self.url_table)) for u in urls])
        codes = column.indices.to_numpy(zero_copy_only=False)
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        out = np.full(len(column), MISSING, np.int32)
        if lut.size:
            out[valid] = lut[codes[valid].astype(np.intp)]
        return out

    def __call__(self, flat: np.ndarray | None) -> None:
        if flat is None:
            wanted = set(self.pending)
        else:
            wanted = self.pending.intersection(np.unique(flat // self.record_size).tolist())
        if not wanted:
            return
        with self.lock:
            for k in sorted(wanted & self.pending):
                self._load(k)
                self.pending.discard(k)
            if not self.pending:
                self.var.loader = None

    def _check_rows(self, k: int, ids, offsets, sizes) -> None:
        """Rows read late get the checks a JSON table gets at load: no chunk beyond its
        source's known size, none larger than a chunk can be (before anything is read)."""
        stored = ids >= 0
        if np.any(sizes[stored] > MAX_CHUNK_BYTES):
            raise IndexLoadError(
                f"parquet index file {self.files[k]} claims chunks over {MAX_CHUNK_BYTES} bytes"
            )
        for url, size in self.var.source_sizes.items():
            uid = self.url_table.get(url)
            mine = ids == uid if uid is not None else None
            if mine is not None and np.any(offsets[mine] + sizes[mine] > size):
                raise IndexLoadError(
                    f"parquet index file {self.files[k]} has chunks beyond the end of {url} "
                    f"({size} bytes): the file changed or the index is wrong"
                )

    def _check_types(self, k: int, table) -> None:
        """``offset`` and ``size`` are integer columns, ``raw`` bytes or text."""
        pa, _ = _pyarrow(IndexLoadError)
        for name, ok in (
            ("offset", pa.types.is_integer),
            ("size", pa.types.is_integer),
            (
                "raw",
                lambda t: (
                    pa.types.is_null(t)
                    or pa.types.is_binary(t)
                    or pa.types.is_string(t)
                    or pa.types.is_large_binary(t)
                    or pa.types.is_large_string(t)
                ),
            ),
        ):
            kind = table.schema.field(name).type
            if not ok(kind):
                raise IndexLoadError(
                    f"parquet index file {self.files[k]}: column {name!r} is {kind}, not the "
                    "type kerchunk writes"
                )

    def _load(self, k: int) -> None:
        var = self.var
        start = k * self.record_size
        stop = min(start + self.record_size, var.url_ids.size)
        if stop <= start:
            return
        table = self._read(k, ["offset", "size", "raw"])
        self._check_types(k, table)
        rows = min(stop - start, table.num_rows)
        ids = self.codes.pop(k)[:rows]
        offsets = table.column("offset").fill_null(0).to_numpy()[:rows]
        sizes = table.column("size").fill_null(0).to_numpy()[:rows]
        if np.any(offsets[ids >= 0] < 0) or np.any(sizes[ids >= 0] < 0):
            raise IndexLoadError(
                f"parquet index file {self.files[k]} has negative offsets or sizes"
            )
        self._check_rows(k, ids, offsets, sizes)
        sl = slice(start, start + rows)
        var.url_ids[sl] = ids
        var.offsets[sl] = offsets.astype(np.uint64)
        var.sizes[sl] = sizes.astype(np.uint64)
        raw = table.column("raw")
        inline = np.flatnonzero((ids < 0) & raw.is_valid().to_numpy(zero_copy_only=False)[:rows])
        chunk_bytes = int(np.prod(var.chunks, dtype=np.int64)) * var.dtype.itemsize
        limit = (2 if var.codecs else 1) * chunk_bytes + 4096
        for row in inline.tolist():
            value = raw[row].as_py()
            if len(value) > limit:
                raise IndexLoadError(
                    f"parquet index file {self.files[k]}: row {row} holds {len(value):,} bytes "
                    f"of inline data, more than a chunk of '{var.name}' can ({limit:,})"
                )
            var.url_ids[start + row] = INLINE
            var.inline[start + row] = value if isinstance(value, bytes) else value.encode()
