"""``Catalog``: the Python view of an index directory's catalog.

Select entries, verify and prune them, combine them into one virtual index (``combine.py``)
or reduce across them (``reduce.py``). The store itself is ``store.py``.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import IndexLoadError
from ..index.freshness import CATALOG_NAME, combine_command, fingerprints, refresh_command
from .store import read_catalog, remove_index, updating


def _source_missing(url: str, storage_options: dict | None) -> bool:
    from ..index.sources import is_remote, local_path, open_source

    if not is_remote(url):
        return not os.path.exists(local_path(url))
    try:
        return not open_source(url, storage_options).filesystem().exists(url)
    except Exception:  # noqa: BLE001 - cannot tell: not proven missing
        return False


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
                    Problem(key, "stale-combined", detail, combine_command(self.directory, record))
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
