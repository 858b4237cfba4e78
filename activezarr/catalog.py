"""The catalog of indexed files: ``<dir>/catalog.json``, one entry per source.

Each entry records the source URL, its fingerprint (size + mtime locally, size + ETag
remotely), the index file (relative to the catalog's directory), the global attributes, the
variables (shape, dtype, chunks, dimensions, chunk count and stored bytes), the value range of
each leading dimension that has a coordinate variable (``coords``, e.g. time), when and by
which activezarr version it was made. Indexes combined along a dimension are listed under
``combined`` with the fingerprints of their sources. Updates hold an exclusive lock on
``catalog.json.lock`` and replace the file atomically, so concurrent runs do not lose entries.

``Catalog`` is the Python view of the file: select entries, verify and prune them, combine
them into one virtual index (``combine.py``) or reduce across them (``catalog_reduce.py``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import fnmatch
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import ActiveZarrError, IndexBuildError, IndexLoadError
from .index.refs import write_atomic

CATALOG_NAME = "catalog.json"
ATTR_MAX_CHARS = 256  # longer global attributes (history, references) stay out of the catalog


def _version() -> str:
    from . import __version__

    return __version__


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


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


def variable_summary(translation) -> dict[str, Any]:
    return {
        v.name: {
            "shape": list(v.shape),
            "dtype": v.dtype,
            "chunks": list(v.chunks),
            "dimensions": v.dimensions,
            "n_chunks": v.n_chunks,
            "nbytes": v.stored_bytes,
        }
        for v in translation.variables
    }


def _json_number(value) -> float | int | None:
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def coordinate_ranges(translation) -> dict[str, dict[str, Any]]:
    """Value range of each leading dimension that has a 1-d numeric coordinate variable."""
    from .active import Active

    by_name = {v.name: v for v in translation.variables}
    data = [v for v in translation.variables if v.dimensions and list(v.dimensions) != [v.name]]
    leading = {v.dimensions[0] for v in data}
    ranges = {}
    for dim in sorted(leading):
        coord = by_name.get(dim)
        if (
            coord is None
            or list(coord.dimensions) != [dim]
            or np.dtype(coord.dtype).kind not in "iuf"
        ):
            continue
        source = translation.source
        try:
            with Active(
                translation.refs_for(dim),
                dim,
                storage_options=source.storage_options,
                check_stale=False,
            ) as a:
                values = a[:]
        except ActiveZarrError as exc:
            raise IndexBuildError(
                f"{source.display}: cannot read coordinate '{dim}' ({exc})"
            ) from exc
        valid = values.compressed()
        attrs = translation.meta.get(f"{dim}/.zattrs") or {}
        if isinstance(attrs, str):
            attrs = json.loads(attrs)
        ranges[dim] = {
            "size": int(values.size),
            "min": _json_number(valid.min()) if valid.size else None,
            "max": _json_number(valid.max()) if valid.size else None,
            "first": _json_number(valid[0]) if valid.size else None,
            "last": _json_number(valid[-1]) if valid.size else None,
            "units": attrs.get("units"),
            "calendar": attrs.get("calendar"),
        }
    return ranges


def global_attrs(refs: dict[str, Any]) -> dict[str, Any]:
    """The file's global attributes that are short enough to select on."""
    attrs = refs.get(".zattrs") or {}
    if isinstance(attrs, str):
        attrs = json.loads(attrs)
    keep = {}
    for key, value in attrs.items():
        if isinstance(value, bool | int | float) or (
            isinstance(value, str) and len(value) <= ATTR_MAX_CHARS
        ):
            keep[key] = _json_number(value) if isinstance(value, float) else value
    return keep


def make_entry(translation, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """A catalog entry for one translated file (without its index name)."""
    return {
        "source": translation.source.url,
        "fingerprint": fingerprint,
        "size": fingerprint.get("size"),
        "mtime": fingerprint.get("mtime"),
        "etag": fingerprint.get("etag"),
        "index": None,
        "attrs": global_attrs(translation.meta),
        "variables": variable_summary(translation),
        "coords": coordinate_ranges(translation),
        "skipped": translation.skipped,
        "created_at": _now(),
        "activezarr_version": _version(),
    }


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


# -- staleness ------------------------------------------------------------------------------


def refresh_command(url: str, directory: Path) -> str:
    return f"activezarr index {url} --out {directory} --force"


def _combine_command(directory: Path, record: dict[str, Any]) -> str:
    out = "" if record.get("default_name") else f" --out {directory / record['index']}"
    return (
        f"activezarr combine --catalog {directory / CATALOG_NAME} --var {record['variable']} "
        f"--concat-dim {record['concat_dim']}{out}"
    )


def check_fresh(index: str, urls: list[str], storage_options: dict | None = None) -> None:
    """Raise ``StaleIndexError`` when a source recorded in the index's catalog has changed.

    The catalog is the ``catalog.json`` beside a local index: for a per-file index its entry,
    for a combined index its ``combined`` record (the fingerprints its sources had when it was
    combined). Sources it does not list (an index made elsewhere, a refs dict) are not
    checked. One stat or HEAD per source, in parallel for remote ones; a remote fingerprint
    is reused for ``REMOTE_CHECK_TTL`` seconds within the process.
    """
    from .errors import StaleIndexError

    path = Path(index)
    if "://" in str(index) or not (path.parent / CATALOG_NAME).exists():
        return
    directory = path.parent
    catalog = read_catalog(directory)
    combined = catalog["combined"].get(path.name)
    if combined is not None:
        expected = {u: combined["sources"][u] for u in urls if u in combined["sources"]}
        again = f" && {_combine_command(directory, combined)}"
    else:
        entries = catalog["entries"]
        expected = {
            u: entries[u]["fingerprint"]
            for u in urls
            if u in entries and entries[u].get("index") == path.name
        }
        again = ""
    for url, now in _recent_fingerprints(list(expected), storage_options).items():
        refresh = f"refresh with `{refresh_command(url, directory)}{again}`"
        if isinstance(now, Exception):
            raise StaleIndexError(
                f"{url}, indexed into {index}, cannot be checked ({now}); {refresh}"
            ) from now
        if now != expected[url]:
            raise StaleIndexError(
                f"{url} changed since it was indexed into {index} "
                f"(was {expected[url]}, now {now}); {refresh}"
            )


# Remote fingerprints that ``check_fresh`` saw recently: opening many ``Active`` objects over
# the same S3 files in one run costs one HEAD per file, not one per ``Active``. Local files
# are always stat-ed again (cheap and exact).
REMOTE_CHECK_TTL = 60.0
_recent: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
_recent_lock = threading.Lock()


def _recent_fingerprints(urls: list[str], storage_options: dict | None) -> dict[str, Any]:
    from .index.sources import is_remote

    now = time.monotonic()
    options = json.dumps(storage_options or {}, sort_keys=True, default=str)
    with _recent_lock:  # keyed by options too: a check made with other credentials proves nothing
        cached = {
            u: _recent[(u, options)][1]
            for u in urls
            if (u, options) in _recent and now - _recent[(u, options)][0] < REMOTE_CHECK_TTL
        }
    fresh = fingerprints([u for u in urls if u not in cached], storage_options)
    with _recent_lock:
        for u, fp in fresh.items():
            if is_remote(u) and not isinstance(fp, Exception):
                _recent[(u, options)] = (now, fp)
    return {**cached, **fresh}


def fingerprints(urls: list[str], storage_options: dict | None = None) -> dict[str, Any]:
    """The current fingerprint of each source, or the exception that prevented reading it."""
    from .index.sources import is_remote, open_source

    def probe(url: str):
        try:
            source = open_source(url, storage_options)
            if source.remote:
                # fsspec keeps listings (from a glob) in its cache: ask the store again
                source.filesystem().invalidate_cache(url)
            return source.fingerprint()
        except Exception as exc:  # noqa: BLE001 - reported to the caller per source
            return exc

    remote = [u for u in urls if is_remote(u)]
    out = {u: probe(u) for u in urls if not is_remote(u)}
    if remote:
        import concurrent.futures as cf

        with cf.ThreadPoolExecutor(min(16, len(remote))) as pool:
            out.update(zip(remote, pool.map(probe, remote), strict=True))
    return out


def _source_missing(url: str, storage_options: dict | None) -> bool:
    from .index.sources import is_remote, local_path, open_source

    if not is_remote(url):
        return not os.path.exists(local_path(url))
    try:
        return not open_source(url, storage_options).filesystem().exists(url)
    except Exception:  # noqa: BLE001 - cannot tell: not proven missing
        return False


def remove_index(directory: Path, name: str) -> None:
    """Delete an index (JSON file or parquet directory) and its chunk-table sidecars."""
    from .index.cache import CACHE_DIR

    for path in (directory / name, directory / CACHE_DIR / name):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


# -- the Python view ------------------------------------------------------------------------


@dataclass(frozen=True)
class CoordRange:
    """The values a file covers along one dimension, from its coordinate variable."""

    dim: str
    size: int
    min: float | None
    max: float | None
    units: str | None = None
    calendar: str | None = None


@dataclass(frozen=True)
class Entry:
    """One indexed source file, as recorded in the catalog."""

    source: str
    index: Path
    fingerprint: dict[str, Any]
    variables: dict[str, dict[str, Any]]
    coords: dict[str, dict[str, Any]] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    activezarr_version: str = ""

    @classmethod
    def from_record(cls, record: dict[str, Any], directory: Path) -> Entry:
        return cls(
            source=record["source"],
            index=directory / record["index"],
            fingerprint=record.get("fingerprint") or {},
            variables=record.get("variables") or {},
            coords=record.get("coords") or {},
            attrs=record.get("attrs") or {},
            created_at=record.get("created_at", ""),
            activezarr_version=record.get("activezarr_version", ""),
        )

    def coord_range(self, dim: str) -> CoordRange | None:
        """The recorded range of ``dim`` (a leading dimension with a coordinate variable)."""
        c = self.coords.get(dim)
        if c is None:
            return None
        return CoordRange(dim, c["size"], c["min"], c["max"], c.get("units"), c.get("calendar"))

    def dimensions(self, var: str) -> tuple[str, ...]:
        return tuple(self.variables[var].get("dimensions") or ())


@dataclass(frozen=True)
class Problem:
    """What ``Catalog.verify`` found wrong with one entry, and the command that fixes it."""

    source: str
    kind: Literal["changed", "missing", "unreachable", "no-index", "stale-combined"]
    detail: str
    fix: str


def _matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, list | tuple | set | frozenset):
        return any(_matches(value, w) for w in wanted)
    if isinstance(wanted, str):
        return value is not None and fnmatch.fnmatchcase(str(value), wanted)
    return value == wanted


class Catalog:
    """The indexed files of one ``catalog.json``: select, verify, prune, combine, reduce.

    A ``Catalog`` is a snapshot of the file taken when it is created; ``select`` narrows it
    down without touching the file.

    Parameters
    ----------
    path : str or Path
        ``catalog.json``, or the directory holding it.
    storage_options : dict, optional
        fsspec options for remote sources (fingerprints, reading data).

    Examples
    --------
    >>> cat = Catalog("indexes/catalog.json")  # doctest: +SKIP
    >>> cat.select(var="tas", path="*historical*").combine(var="tas", concat_dim="time")
    ... # doctest: +SKIP
    PosixPath('indexes/combined_tas_time.json')
    >>> cat.reduce(var="tas", op="mean", where={"time": slice(0, 365)})  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike = "indexes/catalog.json",
        *,
        storage_options: dict | None = None,
        _entries: list[Entry] | None = None,
    ) -> None:
        path = Path(path)
        if path.is_dir() or path.suffix != ".json":
            path = path / CATALOG_NAME
        self.path = path
        self.directory = path.parent
        self.storage_options = storage_options
        if _entries is None:
            if not path.exists():
                raise IndexLoadError(
                    f"catalog {path} does not exist; create it with "
                    f"`activezarr index FILES --out {self.directory}`"
                )
            raw = read_catalog(self.directory)
            _entries = [Entry.from_record(r, self.directory) for r in raw["entries"].values()]
            self.combined: dict[str, dict[str, Any]] = raw["combined"]
        else:
            self.combined = {}
        self._entries = sorted(_entries, key=lambda e: e.source)
        self.files_read: list[str] = []  # sources the last ``reduce`` read

    @property
    def entries(self) -> list[Entry]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries)

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r}, entries={len(self)})"

    def __getitem__(self, source: str) -> Entry:
        """The entry of a source URL or path, or of an index file name."""
        for e in self._entries:
            if source in (e.source, e.index.name, str(e.index)) or e.source == os.path.abspath(
                source
            ):
                return e
        raise KeyError(f"{source} is not in catalog {self.path}")

    @property
    def variables(self) -> list[str]:
        return sorted({v for e in self._entries for v in e.variables})

    def select(
        self,
        var: str | None = None,
        path: str | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> Catalog:
        """The entries that have variable ``var``, a source matching the glob ``path`` and
        global attributes matching ``attrs`` (values are equal, match a glob, or are in a list).

        Examples
        --------
        >>> cat.select(var="tas", attrs={"experiment_id": "historical"})  # doctest: +SKIP
        """
        chosen = [
            e
            for e in self._entries
            if (var is None or var in e.variables)
            and (path is None or fnmatch.fnmatchcase(e.source, path))
            and all(_matches(e.attrs.get(k), w) for k, w in (attrs or {}).items())
        ]
        view = Catalog(self.path, storage_options=self.storage_options, _entries=chosen)
        view.combined = self.combined
        return view

    # -- maintenance -------------------------------------------------------------------------

    def verify(self) -> list[Problem]:
        """Check every entry's source fingerprint and index file, and every combined index."""
        problems = []
        now = fingerprints([e.source for e in self._entries], self.storage_options)
        for e in self._entries:
            fix = refresh_command(e.source, self.directory)
            current = now[e.source]
            if isinstance(current, Exception):
                if _source_missing(e.source, self.storage_options):
                    problems.append(
                        Problem(
                            e.source,
                            "missing",
                            "source is gone",
                            f"activezarr catalog prune --catalog {self.path}",
                        )
                    )
                else:
                    problems.append(Problem(e.source, "unreachable", str(current), fix))
            elif current != e.fingerprint:
                problems.append(
                    Problem(e.source, "changed", f"was {e.fingerprint}, now {current}", fix)
                )
            elif not e.index.exists():
                problems.append(Problem(e.source, "no-index", f"{e.index} is missing", fix))
        problems += self._verify_combined(now)
        return problems

    def _verify_combined(self, now: dict[str, Any]) -> list[Problem]:
        problems = []
        for key, record in self.combined.items():
            changed = [
                u
                for u, fp in record["sources"].items()
                if u in now and now[u] != fp or u not in now
            ]
            if changed or not (self.directory / key).exists():
                detail = (
                    f"{len(changed)} of its {len(record['sources'])} sources changed "
                    f"(first: {changed[0]})"
                    if changed
                    else f"{self.directory / key} is missing"
                )
                problems.append(
                    Problem(key, "stale-combined", detail, _combine_command(self.directory, record))
                )
        return problems

    def prune(self, dry_run: bool = False) -> list[str]:
        """Drop entries whose source is gone, their index files, and combined indexes that use
        them. Returns the pruned sources and combined index names."""
        gone = [e for e in self._entries if _source_missing(e.source, self.storage_options)]
        sources = {e.source for e in gone}
        combined = [k for k, r in self.combined.items() if sources & set(r.get("sources") or ())]
        if dry_run or not (gone or combined):
            return sorted(sources) + combined
        with updating(self.directory) as catalog:
            for source in sources:
                record = catalog["entries"].pop(source, None)
                if record and record.get("index"):
                    remove_index(self.directory, record["index"])
            for key in combined:
                if catalog["combined"].pop(key, None) is not None:
                    remove_index(self.directory, key)
        self._entries = [e for e in self._entries if e.source not in sources]
        for key in combined:
            self.combined.pop(key, None)
        return sorted(sources) + combined

    # -- across files ------------------------------------------------------------------------

    def combine(
        self, var: str, concat_dim: str = "time", out: str | os.PathLike | None = None
    ) -> Path:
        """One kerchunk index of ``var`` over every selected file, concatenated along
        ``concat_dim`` (kerchunk's MultiZarrToZarr), written under the catalog directory.

        Returns the path of the combined index (default ``<dir>/combined_<var>_<dim>.json``),
        which ``Active`` opens like any other. Files whose chunking, encoding or length along
        ``concat_dim`` breaks one chunk grid raise ``ActiveZarrError`` naming them: use
        ``Catalog.reduce`` for those.

        Examples
        --------
        >>> index = Catalog("indexes").combine(var="tas", concat_dim="time")  # doctest: +SKIP
        >>> Active(index, "tas").mean[...]  # doctest: +SKIP
        """
        from .combine import combine

        return combine(self, var, concat_dim, out)

    def reduce(
        self,
        var: str,
        op: str,
        where: dict[str, slice] | None = None,
        axis=None,
        selection=(),
        *,
        concat_dim: str | None = None,
        components: bool = False,
        jobs: int = 4,
        **active_options: Any,
    ):
        """Reduce ``var`` across the selected files, file by file, as one ``Active`` would over
        their concatenation along ``concat_dim`` (default: the variable's first dimension).

        Parameters
        ----------
        where : dict, optional
            ``{dim: slice(a, b)}`` in coordinate values, both ends included (numbers in the
            coordinate's units, or dates such as ``"1850-01-01"`` for time-like units). Only the
            files that overlap are read.
        axis, selection :
            As for ``Active``: ``selection`` applies to the concatenation after ``where``.
        components : bool
            Return the partials (``{"sum", "count"}`` ...) instead of the answer.
        jobs : int
            Files reduced at the same time.
        active_options :
            Passed to each ``Active`` (``backend``, ``server``, ``executor``, ...).

        Examples
        --------
        >>> Catalog("indexes").reduce("tas", "mean", where={"time": slice("1850", "2014-12-31")})
        ... # doctest: +SKIP
        """
        from .catalog_reduce import reduce_across

        return reduce_across(
            self,
            var,
            op,
            where=where,
            axis=axis,
            selection=selection,
            concat_dim=concat_dim,
            components=components,
            jobs=jobs,
            active_options=active_options,
        )
