"""``Catalog``: the Python view of an index directory's catalog.

Search and select entries (SQL on the store, so a million rows cost no more than the rows
found), verify and prune them, combine them into one virtual index (``combine.py``), reduce
across them (``reduce.py``) or export them for intake-esm (``export.py``). The store itself
is ``store.py``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import IndexLoadError
from ..index.freshness import (
    DB_NAME,
    combine_command,
    differences,
    fingerprints,
    refresh_command,
)
from ..index.jsontext import loads
from . import store
from .facets import FACETS
from .progress import Progress, on_terminal
from .search import Condition, attr_condition, condition, order, shell_path_condition, where


def _source_missing(url: str, storage_options: dict | None) -> bool:
    from ..index.sources import is_remote, local_path, open_source

    if not is_remote(url):
        return not os.path.exists(local_path(url))
    try:
        return not open_source(url, storage_options).filesystem().exists(url)
    except Exception:  # noqa: BLE001 - cannot tell: not proven missing
        return False


# -- the Python view ------------------------------------------------------------------------


_LAZY = ("fingerprint", "variables", "coords", "attrs")  # Entry fields parsed on first read


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
    facets: dict[str, str | None] = field(default_factory=dict)
    time_start: str | None = None
    time_end: str | None = None

    @classmethod
    def from_row(cls, row, directory: Path) -> Entry:
        """The entry of a ``files`` row (or a dict of some of its columns), its JSON columns
        (``fingerprint``, ``variables``, ``coords``, ``attrs``) parsed when first read:
        listing a million rows parses none."""
        entry = object.__new__(cls)
        # sqlite3.Row looks names up one by one
        r = row if isinstance(row, dict) else dict(zip(row.keys(), row, strict=True))
        cheap = {
            "source": r["source"],
            "index": directory / r["index_name"],
            "created_at": r.get("created_at") or "",
            "activezarr_version": r.get("activezarr_version") or "",
            "facets": {f: r[f] for f in FACETS if r.get(f) is not None},
            "time_start": r.get("time_start"),
            "time_end": r.get("time_end"),
            "_raw": {c: r[c] for c in _LAZY if c in r},
        }
        for name, value in cheap.items():
            object.__setattr__(entry, name, value)
        return entry

    def __getattr__(self, name: str) -> Any:  # only for the lazy fields not yet parsed
        raw = self.__dict__.get("_raw")
        if raw is None or name not in _LAZY:
            raise AttributeError(name)
        text = raw.get(name)  # not popped: a copy.copy of the entry shares ``_raw``
        try:
            value = (loads(text) if isinstance(text, str) else text) or {}
        except ValueError:  # the row was damaged outside activezarr
            directory = self.index.parent
            raise IndexLoadError(
                f"catalog {directory}: the entry of {self.source} is damaged (its {name} is "
                f"not JSON); rebuild it with `activezarr index {self.source} --out {directory} "
                "--force`"
            ) from None
        object.__setattr__(self, name, value)
        return value

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


class Catalog:
    """The indexed files of one index directory: search, verify, prune, combine, reduce, export.

    The catalog is ``<dir>/catalog.db`` (SQLite). ``search`` and ``select`` give narrower
    views without reading any row; the rows of a view are read when first needed.

    Parameters
    ----------
    path : str or Path
        The index directory (or its ``catalog.db``; an old ``catalog.json`` path names its
        directory too, and is moved into the database on first use).
    storage_options : dict, optional
        fsspec options for remote sources (fingerprints, reading data).

    Examples
    --------
    >>> cat = Catalog("indexes")  # doctest: +SKIP
    >>> tas = cat.search(source_id="IPSL*", experiment_id="historical", variable_id="tas")
    ... # doctest: +SKIP
    >>> tas.combine(var="tas", concat_dim="time")  # doctest: +SKIP
    PosixPath('indexes/combined_tas_time.json')
    >>> tas.reduce(var="tas", op="mean", where={"time": slice("1850", "1900")})  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike = "indexes",
        *,
        storage_options: dict | None = None,
        _conditions: tuple[Condition, ...] = (),
    ) -> None:
        path = Path(path)
        directory = path.parent if path.suffix in (".db", ".json") and not path.is_dir() else path
        self.directory = directory
        self.path = directory / DB_NAME
        self.storage_options = storage_options
        self._conditions = _conditions
        with store.opened(directory):  # raises when there is no catalog; migrates
            pass
        # the combined indexes by name, each record parsed when first used
        self.combined = store.Combined(directory)
        self._entries: list[Entry] | None = None
        self.files_read: list[str] = []  # sources the last ``reduce`` read

    def _view(self, more: tuple[Condition, ...]) -> Catalog:
        view = Catalog.__new__(Catalog)
        view.__dict__.update(self.__dict__)
        view._conditions = self._conditions + more
        view._entries = None
        view.files_read = []
        return view

    def _query(self, sql: str, params: list | tuple = ()) -> list:
        with store.opened(self.directory) as con:
            return con.execute(sql, list(params)).fetchall()

    def _rows(self, extra: str = "", params: tuple = (), limit: int | None = None) -> list:
        clause, args = where(self._conditions)
        if extra:
            clause = f"{clause} AND {extra}" if clause else f" WHERE {extra}"
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        by = order(self._conditions)
        return self._query(f"SELECT * FROM files{clause} ORDER BY {by}{tail}", [*args, *params])

    @property
    def entries(self) -> list[Entry]:
        if self._entries is None:
            self._entries = list(self._stream())
        return list(self._entries)

    def _stream(self, batch: int = 1024) -> Iterator[Entry]:
        """The entries row by row from one query (memory bounded by ``batch`` rows)."""
        clause, args = where(self._conditions)
        with store.opened(self.directory) as con:
            by = order(self._conditions)
            cursor = con.execute(f"SELECT * FROM files{clause} ORDER BY {by}", args)
            while rows := cursor.fetchmany(batch):
                yield from (Entry.from_row(r, self.directory) for r in rows)

    def __len__(self) -> int:
        if self._entries is not None:
            return len(self._entries)
        clause, args = where(self._conditions)
        return self._query(f"SELECT COUNT(*) FROM files{clause}", args)[0][0]

    def __iter__(self) -> Iterator[Entry]:
        """The entries in source order; streamed from the store (not kept) until ``entries``
        has been read."""
        return iter(self._entries) if self._entries is not None else self._stream()

    def __repr__(self) -> str:
        return f"Catalog({str(self.directory)!r}, entries={len(self)})"

    def __getitem__(self, source: str) -> Entry:
        """The entry of a source URL or path, or of an index file name."""
        text = str(source)
        name = Path(text).name if Path(text).parent == self.directory else text
        rows = self._rows(
            "(source = ? OR source = ? OR index_name = ?)",
            (text, os.path.abspath(text) if "://" not in text else text, name),
            limit=1,
        )
        if not rows:
            raise KeyError(f"{source} is not in catalog {self.path}")
        return Entry.from_row(rows[0], self.directory)

    @property
    def variables(self) -> list[str]:
        clause, args = where(self._conditions)
        rows = self._query(
            f"SELECT DISTINCT name FROM variables WHERE source IN (SELECT source FROM files"
            f"{clause}) ORDER BY name",
            args,
        )
        return [r[0] for r in rows]

    def folders(self, limit: int = 5) -> list[str]:
        """The first ``limit`` directories (or URL prefixes) the entries' sources lie in."""
        clause, args = where(self._conditions)
        rows = self._query(
            "SELECT DISTINCT rtrim(source, replace(source, '/', '')) FROM files"
            f"{clause} ORDER BY 1 LIMIT {int(limit)}",
            args,
        )
        return [r[0].rstrip("/") or "/" for r in rows]

    def unique(self, facet: str) -> list:
        """The distinct values of a facet (or ``variable_id``) among the entries, sorted."""
        clause, args = where(self._conditions)
        if facet == "variable_id":
            sql = (
                "SELECT DISTINCT name FROM variables WHERE role = 'data' AND source IN "
                f"(SELECT source FROM files{clause})"
            )
        elif facet in (*FACETS, "time_start", "time_end"):
            sql = f"SELECT DISTINCT {facet} FROM files{clause}"
        else:
            raise KeyError(f"{facet} is not a facet; use one of {', '.join(FACETS)}")
        return sorted(r[0] for r in self._query(sql, args) if r[0] is not None)

    def search(self, **query: Any) -> Catalog:
        """The entries matching every facet of ``query``, in intake-esm's style: a value,
        a glob (``"IPSL*"``) or a list of them (any matches).

        Keys: the facets (``source_id``, ``experiment_id``, ``member_id``, ``table_id``,
        ``frequency``, ``grid_label``, ``institution_id``, ``activity_id``, ``version`` ...),
        ``variable_id`` (a data variable of the file), ``path`` (a glob on the source) and
        any other global attribute name.

        Examples
        --------
        >>> Catalog("indexes").search(source_id="IPSL*", experiment_id=["historical", "ssp585"],
        ...                           variable_id="tas")  # doctest: +SKIP
        """
        return self._view(tuple(condition(k, v) for k, v in query.items()))

    def select(
        self,
        var: str | None = None,
        path: str | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> Catalog:
        """The entries that have variable ``var``, a source matching the glob ``path`` and
        global attributes matching ``attrs`` (values are equal, match a glob, or are in a list).

        ``path`` matches as a shell expands it: relative to the current directory, ``*`` within
        one directory, ``**`` across them, a trailing ``/`` for everything under a directory; a
        pattern without ``/`` matches the file name wherever it is (``search(path=...)``, in
        intake-esm's style, matches the whole source instead).

        Examples
        --------
        >>> cat.select(var="tas", attrs={"experiment_id": "historical"})  # doctest: +SKIP
        >>> cat.select(path="data/**/tas_*.nc")  # doctest: +SKIP
        """
        more = []
        if var is not None:
            more.append(condition("variable", var))
        if path is not None:
            more.append(shell_path_condition(path))
        for key, wanted in (attrs or {}).items():
            more.append(attr_condition(key, wanted))
        return self._view(tuple(more))

    def to_intake_esm(self, path: str | os.PathLike, name: str | None = None) -> Path:
        """Write the entries as an intake-esm collection (``<name>.json`` + ``<name>.csv.gz``,
        ``format: reference``, one row per file and data variable, the facets as columns).

        Returns the JSON file, which ``intake.open_esm_datastore`` opens.

        Examples
        --------
        >>> Catalog("indexes").search(experiment_id="historical").to_intake_esm("esm")
        ... # doctest: +SKIP
        PosixPath('esm/activezarr.json')
        """
        from .export import to_intake_esm

        return to_intake_esm(self, Path(path), name)

    # -- maintenance -------------------------------------------------------------------------

    def verify(self) -> list[Problem]:
        """Check every entry's source fingerprint and index file, and every combined index."""
        return list(self.problems())

    def problems(self, progress: Progress | None = None) -> Iterator[Problem]:
        """``verify``'s problems as they are found: the entries in parts of 256 (one stat or
        HEAD per source), then the combined indexes. ``progress``: counts the entries (default:
        a bar on a terminal, nothing elsewhere); its ``problems`` is kept up to date."""
        bar = on_terminal(len(self)) if progress is None else progress
        troubled: set[str] = set()  # sources found changed, gone or unreachable
        entries = iter(self)
        try:
            while part := list(itertools.islice(entries, 256)):
                current = fingerprints([e.source for e in part], self.storage_options)
                found = [p for p in (self._problem(e, current[e.source]) for e in part) if p]
                troubled.update(p.source for p in found if p.kind != "no-index")
                if hasattr(bar, "problems"):
                    bar.problems += len(found)
                bar.step(n=len(part))
                yield from found
        finally:
            bar.close()
        yield from self._verify_combined(troubled)

    def _problem(self, e: Entry, current: Any) -> Problem | None:
        """What is wrong with entry ``e`` whose source now has fingerprint ``current``."""
        fix = refresh_command(e.source, self.directory)
        if isinstance(current, Exception):
            if _source_missing(e.source, self.storage_options):
                prune = f"activezarr catalog prune --catalog {self.directory}"
                return Problem(e.source, "missing", "source is gone", prune)
            return Problem(e.source, "unreachable", str(current), fix)
        if current != e.fingerprint:
            detail = "; ".join(differences(e.fingerprint, current)) or "fingerprint differs"
            return Problem(e.source, "changed", detail, fix)
        if not e.index.exists():
            return Problem(e.source, "no-index", f"{e.index} is missing", fix)
        return None

    def _verify_combined(self, troubled: set[str]) -> Iterator[Problem]:
        """Combined indexes missing, or with a source that is ``troubled``, or whose catalog
        row (its fingerprint) is not the one the index was made from."""
        for key in self.combined:
            record = self.combined[key]
            sources = record.get("sources") or {}
            with store.opened(self.directory) as con:
                rows = store.recorded(con, list(sources))
            changed = [
                u
                for u, fp in sources.items()
                if u in troubled or u not in rows or rows[u]["fingerprint"] != fp
            ]
            if changed or not (self.directory / key).exists():
                detail = (
                    f"{len(changed)} of its {len(sources)} sources changed (first: {changed[0]})"
                    if changed
                    else f"{self.directory / key} is missing"
                )
                yield Problem(
                    key, "stale-combined", detail, combine_command(self.directory, record)
                )

    def prune(self, dry_run: bool = False) -> list[str]:
        """Drop entries whose source is gone, their index files, and combined indexes that use
        them. Returns the pruned sources and combined index names."""
        # {source: index name} only: whole entries of a big catalog's gone files add up
        gone = {
            e.source: e.index.name for e in self if _source_missing(e.source, self.storage_options)
        }
        sources = set(gone)
        combined = [
            k for k, r in self.combined.items() if not sources.isdisjoint(r.get("sources") or ())
        ]
        if dry_run or not (gone or combined):
            return sorted(sources) + combined
        names = set(gone.values())
        with store.opened(self.directory) as con, store.transaction(con):
            for source in sources:
                con.execute("DELETE FROM files WHERE source = ?", (source,))
                con.execute("DELETE FROM names WHERE source = ?", (source,))
            for key in combined:
                con.execute("DELETE FROM combined WHERE name = ?", (key,))
        for name in [*names, *combined]:
            store.remove_index(self.directory, name)
        if self._entries is not None:
            self._entries = [e for e in self._entries if e.source not in sources]
        for key in combined:
            self.combined.forget(key)
        return sorted(sources) + combined

    # -- across files ------------------------------------------------------------------------

    def combine(
        self,
        var: str,
        concat_dim: str = "time",
        out: str | os.PathLike | None = None,
        *,
        reuse: bool = False,
    ) -> Path:
        """One kerchunk index of ``var`` over every selected file, concatenated along
        ``concat_dim`` (kerchunk's MultiZarrToZarr), written under the catalog directory.

        Returns the path of the combined index (default ``<dir>/combined_<var>_<dim>.json``),
        which ``Active`` opens like any other. Files whose chunking, encoding or length along
        ``concat_dim`` breaks one chunk grid raise ``ActiveZarrError`` naming them: use
        ``Catalog.reduce`` for those. ``reuse``: leave the index as it is (not even its
        modification time changes) when the catalog lists it as made by this version, from
        the same variable and dimension, from exactly the rows selected now with the
        fingerprints they have now; else write it again (atomically).

        Examples
        --------
        >>> index = Catalog("indexes").combine(var="tas", concat_dim="time")  # doctest: +SKIP
        >>> Active(index, "tas").mean[...]  # doctest: +SKIP
        """
        from .combine import combine

        return combine(self, var, concat_dim, out, reuse=reuse)

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
        from .reduce import reduce_across

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
