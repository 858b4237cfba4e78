"""kerchunk's parquet reference format, for indexes too large for JSON.

Layout (as fsspec's ``LazyReferenceMapper`` reads it): a directory with ``.zmetadata`` =
``{"metadata": {every .z* key}, "record_size": N}`` and, per array, ``<var>/refs.<k>.parq``
files of ``N`` rows each; row ``r`` of file ``k`` is chunk ``k*N + r`` in C order of the
chunk grid, with columns ``path``, ``offset``, ``size``, ``raw`` (null path and raw: the chunk
was never written). Written from and read into numpy arrays; needs fastparquet (and pandas).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexBuildError, IndexLoadError
from .load import INLINE, MISSING, VariableIndex, from_table
from .refs import MEMBER

RECORD_SIZE = 100_000


def _fastparquet():
    try:
        import fastparquet
        import pandas
    except ImportError:
        raise IndexBuildError(
            "parquet indexes need fastparquet and pandas: pip install 'activezarr[parquet]'"
        ) from None
    return fastparquet, pandas


def is_parquet(location: str) -> bool:
    path = Path(location)
    return location.endswith((".parq", ".parquet")) or (path / ".zmetadata").is_file()


def write_parquet(target: Path, translation, record_size: int = RECORD_SIZE) -> None:
    """Write the translation as a parquet reference directory, replacing ``target`` atomically."""
    fastparquet, pandas = _fastparquet()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        facts = {"format": 1, "variables": {v.name: v.extra for v in translation.variables}}
        meta = {"metadata": translation.meta, "record_size": record_size, MEMBER: facts}
        (tmp / ".zmetadata").write_text(json.dumps(meta))
        for ds in translation.variables:
            _write_variable(tmp, from_table(ds, str(target)), record_size, fastparquet, pandas)
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
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _write_variable(root: Path, var: VariableIndex, record_size: int, fastparquet, pandas):
    folder = root / var.name
    folder.mkdir(parents=True, exist_ok=True)
    n = max(var.n_chunks, 1) if var.shape or var.chunks == () else var.n_chunks
    paths = np.array([None] + list(var.urls), dtype=object)
    raw = np.full(n, None, dtype=object)
    for flat, data in var.inline.items():
        raw[flat] = data
    ids = var.url_ids[:n] if var.url_ids.size else np.full(n, MISSING, np.int32)
    for k, start in enumerate(range(0, n, record_size)):
        stop = min(start + record_size, n)
        pad = record_size - (stop - start)
        sl = slice(start, stop)
        frame = pandas.DataFrame(
            {
                "path": pandas.Categorical(
                    np.r_[paths[np.where(ids[sl] >= 0, ids[sl] + 1, 0)], [None] * pad]
                ),
                "offset": np.r_[var.offsets[sl].astype(np.int64), np.zeros(pad, np.int64)],
                "size": np.r_[var.sizes[sl].astype(np.int64), np.zeros(pad, np.int64)],
                "raw": np.r_[raw[sl], [None] * pad],
            }
        )
        fastparquet.write(str(folder / f"refs.{k}.parq"), frame, stats=False, compression="ZSTD")


def read_metadata(location: str) -> dict[str, Any]:
    try:
        return json.loads((Path(location) / ".zmetadata").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexLoadError(
            f"parquet index {location} has no readable .zmetadata ({exc})"
        ) from exc


def load_parquet_variable(location: str, name: str) -> VariableIndex:
    """One variable of a parquet index, its chunk table read column by column."""
    from .load import variable_facts, variable_from_meta

    fastparquet, _ = _fastparquet()
    meta = read_metadata(location)
    refs_meta = meta["metadata"]
    var = variable_from_meta(refs_meta, name, location, variable_facts(meta).get(name))
    n = var.n_chunks
    files = sorted(
        (Path(location) / name).glob("refs.*.parq"), key=lambda p: int(p.name.split(".")[1])
    )
    frames = [fastparquet.ParquetFile(str(f)).to_pandas() for f in files]
    if not frames:
        return var
    import pandas

    frame = pandas.concat(frames, ignore_index=True).iloc[:n]
    codes, uniques = pandas.factorize(frame["path"], use_na_sentinel=True)
    var.urls = [str(u) for u in uniques]
    var.url_ids[: len(frame)] = codes.astype(np.int32)
    var.offsets[: len(frame)] = frame["offset"].to_numpy(np.int64).astype(np.uint64)
    var.sizes[: len(frame)] = frame["size"].to_numpy(np.int64).astype(np.uint64)
    raw = frame["raw"].to_numpy(object)
    for flat in np.flatnonzero(pandas.notna(raw) & (codes < 0)).tolist():
        value = raw[flat]
        var.url_ids[flat] = INLINE
        var.inline[flat] = value if isinstance(value, bytes) else bytes(value, "utf-8")
    return var
