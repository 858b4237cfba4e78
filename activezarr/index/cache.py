"""A binary sidecar of each variable's chunk table, so a large index loads in milliseconds.

Parsing a kerchunk JSON index with 250,000 references costs seconds and hundreds of MB; the
same table as three numpy arrays is 5 MB and loads at disk speed. The sidecar lives in
``<index dir>/.activezarr-cache/<index name>/<variable>.npz`` and records the index file's
size and modification time: when the index changes the sidecar is ignored and rewritten.
The JSON index stays the source of truth; deleting the cache only costs time.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import quote

import numpy as np

from .refs import decode_inline, inline_bytes

log = logging.getLogger(__name__)

CACHE_DIR = ".activezarr-cache"
FORMAT = 2


def cache_file(index: Path, variable: str) -> Path:
    return index.parent / CACHE_DIR / index.name / f"{quote(variable, safe='')}.npz"


def _stamp(index: Path) -> list[int]:
    st = os.stat(index)
    return [FORMAT, st.st_size, st.st_mtime_ns]


def save(index: Path, var) -> None:
    """Write the sidecar of ``var`` (a ``VariableIndex``); failures only cost speed later."""
    target = cache_file(index, var.name)
    meta = {
        "stamp": _stamp(index),
        "name": var.name,
        "shape": list(var.shape),
        "chunks": list(var.chunks),
        "dtype": var.dtype.str,
        "fill_value": var.fill_value,
        "fill_attr": var.fill_attr,
        "no_fill": var.no_fill,
        "codecs": var.codecs,
        "attrs": var.attrs,
        "dims": list(var.dims),
        "urls": var.urls,
        "inline": {str(k): inline_bytes(v) for k, v in var.inline.items()},
    }
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".npz", dir=target.parent)
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                url_ids=var.url_ids,
                offsets=var.offsets,
                sizes=var.sizes,
            )
        os.replace(tmp, target)
    except OSError as exc:
        log.info("index cache not written for %s (%s)", index, exc)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def load(index: Path, variable: str, source: str):
    """The cached ``VariableIndex`` of ``variable``, or None when absent or out of date."""
    from .load import VariableIndex

    path = cache_file(index, variable)
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(npz["meta"].tobytes())
            if meta["stamp"] != _stamp(index):
                return None
            url_ids, offsets, sizes = npz["url_ids"], npz["offsets"], npz["sizes"]
    except (OSError, ValueError, KeyError):
        return None
    return VariableIndex(
        name=meta["name"],
        source=source,
        shape=tuple(meta["shape"]),
        chunks=tuple(meta["chunks"]),
        dtype=np.dtype(meta["dtype"]),
        fill_value=meta["fill_value"],
        fill_attr=meta["fill_attr"],
        no_fill=meta["no_fill"],
        codecs=meta["codecs"],
        attrs=meta["attrs"],
        dims=tuple(meta["dims"]),
        urls=meta["urls"],
        url_ids=url_ids,
        offsets=offsets,
        sizes=sizes,
        inline={int(k): decode_inline(v) for k, v in meta["inline"].items()},
    )
