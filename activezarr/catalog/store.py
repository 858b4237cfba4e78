"""The catalog's store: ``<dir>/catalog.json``, one entry per source, updated under a lock.

Updates hold an exclusive lock on ``catalog.json.lock`` and replace the file atomically, so
concurrent runs do not lose entries. Indexes combined along a dimension are listed under
``combined`` with the fingerprints of their sources.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import IndexLoadError
from ..index.freshness import CATALOG_NAME
from ..index.refs import write_atomic
from .entries import _now, _version, make_entry

# -- the file -------------------------------------------------------------------------------


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
    """The parsed ``catalog.json`` of ``directory`` (an empty catalog when there is none)."""
    path = Path(directory) / CATALOG_NAME
    if not path.exists():
        return {"version": 1, "entries": {}, "combined": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise IndexLoadError(f"{path}: is not valid JSON ({exc}); delete it and re-index") from exc
    data.setdefault("entries", {})
    data.setdefault("combined", {})
    return data


@contextlib.contextmanager
def updating(directory: Path) -> Iterator[dict[str, Any]]:
    """Read the catalog under the lock, let the caller change it, write it back atomically."""
    with locked(directory):
        catalog = read_catalog(directory)
        yield catalog
        write_atomic(directory / CATALOG_NAME, json.dumps(catalog, indent=1) + "\n")


# -- entries --------------------------------------------------------------------------------


def _unique_target(entries: dict, source_url: str, target: Path) -> Path:
    """Avoid two sources sharing one index file (same stem, different directories)."""
    taken = {e["index"]: src for src, e in entries.items() if src != source_url}
    if target.name not in taken:
        return target
    digest = hashlib.sha1(source_url.encode()).hexdigest()[:8]
    return target.with_name(f"{target.stem}-{digest}{target.suffix}")


def record_index(
    directory: Path,
    translation,
    target: Path,
    fingerprint: dict[str, Any],
    *,
    write_index: Callable[[Path, Any], None],
) -> Path:
    """Write the index and its catalog entry under the catalog lock; return the index path."""
    entry = make_entry(translation, fingerprint)  # reads coordinates: outside the lock
    with updating(Path(directory)) as catalog:
        entries = catalog["entries"]
        target = _unique_target(entries, entry["source"], target)
        write_index(target, translation)
        entry["index"] = target.name
        entries[entry["source"]] = entry
    return target


def record_combined(directory: Path, key: str, record: dict[str, Any]) -> None:
    """List a combined index under ``combined`` with the fingerprints of its sources."""
    with updating(Path(directory)) as catalog:
        catalog["combined"][key] = {
            **record,
            "created_at": _now(),
            "activezarr_version": _version(),
        }


def remove_index(directory: Path, name: str) -> None:
    """Delete an index (JSON file or parquet directory) and its chunk-table sidecars."""
    from ..index.cache import CACHE_DIR

    for path in (directory / name, directory / CACHE_DIR / name):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
