"""Indexes made on demand: a netCDF4/HDF5 file given where an index belongs is indexed once.

``Active("x.nc", "tas")`` (and ``activezarr reduce x.nc ...``) index the file into a directory
with a catalog, and later calls reuse that index for as long as the catalog's fingerprint of
the file (size and mtime) still matches; a changed file is indexed again. Python uses the index
cache directory (``index_cache_dir``); the command line uses ``indexes/``, as
``activezarr index`` does.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import ActiveZarrError
from .freshness import DB_NAME, LEGACY_NAME
from .sources import is_remote, open_source

log = logging.getLogger(__name__)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NETCDF3_SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
CACHE_ENV = "ACTIVEZARR_INDEX_DIR"


def index_cache_dir() -> Path:
    """Where ``Active`` puts the indexes of files it is given directly.

    ``$ACTIVEZARR_INDEX_DIR`` when set, else ``$XDG_CACHE_HOME/activezarr/indexes``, else
    ``~/.cache/activezarr/indexes``. It holds ordinary indexes and their catalog: delete
    it at any time (files are indexed again when next used), or inspect it with
    ``activezarr catalog ls --catalog DIR``.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "activezarr" / "indexes"


def is_source_file(location: str | os.PathLike) -> bool:
    """A local file that starts with the HDF5 or netCDF3 signature (not an index)."""
    text = os.fspath(location)
    if is_remote(text):
        return False
    path = Path(text.removeprefix("file://"))
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return head.startswith(HDF5_SIGNATURE) or head.startswith(NETCDF3_SIGNATURES)


def ensure_index(
    path: str | os.PathLike, out: str | os.PathLike | None = None, storage_options=None
) -> tuple[Path, bool]:
    """The index of source ``path`` in ``out`` (default: ``index_cache_dir()``), and whether
    it was built now (False: the catalog there records the file unchanged)."""
    from .build import build_index

    out = Path(out) if out is not None else index_cache_dir()
    source = open_source(path, storage_options)
    if (out / DB_NAME).exists() or (out / LEGACY_NAME).exists():
        from ..catalog import Catalog

        try:
            entry = Catalog(out)[source.url]
        except (KeyError, ActiveZarrError):
            entry = None
        known = entry is not None and entry.index.exists()
        if known and entry.fingerprint == source.fingerprint():
            return entry.index, False
    log.info("indexing %s into %s", path, out)
    return build_index(path, out, storage_options=storage_options), True
