"""The catalog of indexed files: ``<dir>/catalog.json``, one entry per source.

Each entry records the source URL, its fingerprint (size + mtime or ETag), the index file
(relative to the catalog's directory), the variables (shape, dtype, chunks, dimensions), when
and by which activezarr version it was made. Updates hold an exclusive lock on
``catalog.json.lock`` and replace the file atomically, so concurrent runs do not lose entries.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import IndexLoadError
from .index.refs import write_atomic

CATALOG_NAME = "catalog.json"


def _version() -> str:
    from . import __version__

    return __version__


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on the catalog of ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{CATALOG_NAME}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_catalog(directory: Path) -> dict[str, Any]:
    path = directory / CATALOG_NAME
    if not path.exists():
        return {"version": 1, "entries": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise IndexLoadError(f"{path}: is not valid JSON ({exc}); delete it and re-index") from exc
    data.setdefault("entries", {})
    return data


def _unique_target(entries: dict, source_url: str, target: Path) -> Path:
    """Avoid two sources sharing one index file (same stem, different directories)."""
    taken = {e["index"]: src for src, e in entries.items() if src != source_url}
    if target.name not in taken:
        return target
    digest = hashlib.sha1(source_url.encode()).hexdigest()[:8]
    return target.with_name(f"{target.stem}-{digest}.json")


def variable_summary(translation) -> dict[str, Any]:
    return {
        v.name: {
            "shape": list(v.shape),
            "dtype": v.dtype,
            "chunks": list(v.chunks),
            "dimensions": v.dimensions,
        }
        for v in translation.variables
    }


def record_index(
    directory: Path,
    translation,
    target: Path,
    fingerprint: dict[str, Any],
    *,
    write_index: Callable[[Path, dict], None],
) -> Path:
    """Write the index and its catalog entry under the catalog lock; return the index path."""
    source = translation.source
    with locked(directory):
        catalog = read_catalog(directory)
        entries = catalog["entries"]
        target = _unique_target(entries, source.url, target)
        write_index(target, translation.refs)
        entries[source.url] = {
            "source": source.url,
            "fingerprint": fingerprint,
            "size": fingerprint.get("size"),
            "mtime": fingerprint.get("mtime"),
            "etag": fingerprint.get("etag"),
            "index": target.name,
            "variables": variable_summary(translation),
            "skipped": translation.skipped,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "activezarr_version": _version(),
        }
        write_atomic(directory / CATALOG_NAME, json.dumps(catalog, indent=1) + "\n")
    return target


def check_fresh(index: str, urls: list[str], storage_options: dict | None = None) -> None:
    """Raise ``StaleIndexError`` when a source recorded in the index's catalog has changed.

    The catalog is the ``catalog.json`` beside a local index; sources it does not list (an
    index made elsewhere, a refs dict) are not checked. One stat or HEAD per source.
    """
    from .errors import StaleIndexError
    from .index.sources import open_source

    path = Path(index)
    if "://" in str(index) or not (path.parent / CATALOG_NAME).exists():
        return
    entries = read_catalog(path.parent)["entries"]
    for url in urls:
        entry = entries.get(url)
        if entry is None or entry.get("index") != path.name and not entry.get("combined"):
            continue
        try:
            now = open_source(url, storage_options).fingerprint()
        except Exception as exc:  # noqa: BLE001 - any failure to look means we cannot trust it
            raise StaleIndexError(
                f"{url}, indexed into {index}, cannot be checked ({exc}); "
                f"refresh with `activezarr index {url} --out {path.parent} --force`"
            ) from exc
        if now != entry.get("fingerprint"):
            raise StaleIndexError(
                f"{url} changed since it was indexed into {index} "
                f"(was {entry.get('fingerprint')}, now {now}); "
                f"refresh with `activezarr index {url} --out {path.parent} --force`"
            )
