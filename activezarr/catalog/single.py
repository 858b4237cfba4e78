"""One file indexed into a directory and recorded in its catalog; on demand for ``Active``.

``build_index`` is the public one-file indexer. ``ensure_index`` serves ``Active("x.nc", "tas")``
(and ``activezarr reduce x.nc ...``): the file is indexed into a directory with a catalog once,
and later calls reuse that index while the catalog's fingerprint of the file still matches; a
changed file is indexed again. Python uses the index cache directory (``index_cache_dir``); the
command line uses ``indexes/``, as ``activezarr index`` does.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from ..errors import ActiveZarrError, IndexBuildError
from ..index.build import index_path_for, translate, write_index
from ..index.freshness import DB_NAME, LEGACY_NAME
from ..index.sources import open_source
from .store import record_index

log = logging.getLogger(__name__)

CACHE_ENV = "ACTIVEZARR_INDEX_DIR"


def build_index(
    path: str | Path,
    out: str | Path = "indexes",
    *,
    storage_options: dict | None = None,
    catalog: bool = True,
    format: Literal["json", "parquet"] = "json",
) -> Path:
    """Index one netCDF4/HDF5 file into ``<out>/<stem>.json`` and record it in the catalog.

    Parameters
    ----------
    path : str or Path
        A local path, or an ``s3://`` / ``https://`` URL.
    out : str or Path
        Directory for the index and ``catalog.json`` (created if missing).
    storage_options : dict, optional
        fsspec options for remote sources (``anon``, ``endpoint_url``, ...).
    catalog : bool
        Record the file in ``<out>/catalog.json``.
    format : {"json", "parquet"}
        kerchunk JSON (default), or kerchunk's parquet references (``<stem>.parq/``) for
        files with very many chunks; parquet needs ``pip install 'activezarr[parquet]'``.

    Returns
    -------
    Path
        The written index.

    Examples
    --------
    >>> build_index("tas_2000.nc", out="indexes")  # doctest: +SKIP
    PosixPath('indexes/tas_2000.json')
    """
    out = Path(out)
    source = open_source(path, storage_options)
    fingerprint = source.fingerprint()
    translation = translate(source)
    if format not in ("json", "parquet"):
        raise IndexBuildError(f"unknown index format {format!r}; use 'json' or 'parquet'")
    target = index_path_for(source, out)
    write = write_index
    if format == "parquet":
        from ..index.parquet import write_parquet

        target = target.with_suffix(".parq")
        write = write_parquet
    if catalog:
        target = record_index(out, translation, target, fingerprint, write_index=write)
    else:
        write(target, translation)
    return target


def index_cache_dir() -> Path:
    """Where ``Active`` puts the indexes of files it is given directly.

    ``$ACTIVEZARR_INDEX_DIR`` when set, else ``$XDG_CACHE_HOME/activezarr/indexes``, else
    ``~/.cache/activezarr/indexes``. It holds ordinary indexes and their catalog: delete
    it at any time (files are indexed again when next used), or inspect it with
    ``activezarr catalog ls --catalog DIR``.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    try:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    except (RuntimeError, KeyError):  # no HOME and no password entry to find it
        raise IndexBuildError(
            f"no home directory to keep indexes in; set {CACHE_ENV} to a writable directory"
        ) from None
    return Path(base) / "activezarr" / "indexes"


def unwritable(out: Path) -> str | None:
    """Why indexes cannot be written into directory ``out`` (made if missing), or None."""
    if out.exists() and not out.is_dir():
        return "it is a file, not a directory"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return exc.strerror or str(exc)
    if not os.access(out, os.W_OK | os.X_OK):
        return "permission denied"
    return None


def ensure_index(
    path: str | os.PathLike, out: str | os.PathLike | None = None, storage_options=None
) -> tuple[Path, bool]:
    """The index of source ``path`` in ``out`` (default: ``index_cache_dir()``), and whether
    it was built now (False: the catalog there records the file unchanged)."""
    out = Path(out) if out is not None else index_cache_dir()
    source = open_source(path, storage_options)
    if (out / DB_NAME).exists() or (out / LEGACY_NAME).exists():
        from .catalog import Catalog

        try:
            entry = Catalog(out)[source.url]
        except (KeyError, ActiveZarrError):
            entry = None
        known = entry is not None and entry.index.exists()
        if known and entry.fingerprint == source.fingerprint():
            return entry.index, False
    reason = unwritable(out)
    if reason:
        raise IndexBuildError(
            f"cannot write the index of {path} into {out} ({reason}); set {CACHE_ENV} to a "
            "writable directory, or index the file with build_index(path, out=DIR)",
            cli=f"cannot write the index of {path} into {out} ({reason}); index it with "
            f"`activezarr index {path} --out DIR` and give DIR/NAME.json",
        )
    log.info("indexing %s into %s", path, out)
    return build_index(path, out, storage_options=storage_options), True
