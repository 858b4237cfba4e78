"""The catalog's store: ``<dir>/catalog.db``, SQLite through the standard library.

Tables (schema version ``SCHEMA_VERSION``):

``files``
    one row per indexed source: its fingerprint, index file name (relative to the directory),
    global attributes, variables, coordinate ranges, facets and ISO time range;
``variables``
    one row per (source, variable) with its role (``data``, ``coordinate``, ``bounds``),
    indexed by name: what ``search(variable_id=...)`` and the intake-esm export use;
``names``
    the index file name reserved for each source, taken before the index is written so that
    two runs never write two sources into one file;
``combined``
    indexes combined along a dimension, with the fingerprints of their sources.

Every change is one short transaction (``BEGIN IMMEDIATE``; WAL journal, so readers never
wait), whose cost does not depend on the catalog's size; concurrent writers queue on SQLite's
lock. A row is committed only after its index file is in place, so a crash at any moment
leaves a catalog whose every row points at an index that loads. An old ``catalog.json`` is
moved into the database the first time the directory is opened, and renamed
``catalog.json.migrated``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from ..errors import ActiveZarrError, IndexLoadError
from ..index.atomic import UMASK
from ..index.freshness import DB_NAME, LEGACY_NAME
from ..index.jsontext import compact_json
from .facets import FACETS

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 120.0  # a writer waits this long for another run's transaction

_JSON_COLUMNS = ("fingerprint", "attrs", "variables", "coords", "skipped")
FILE_COLUMNS = (
    "source",
    "index_name",
    "fingerprint",
    "size",
    "mtime",
    "etag",
    "attrs",
    "variables",
    "coords",
    "skipped",
    "created_at",
    "activezarr_version",
    *FACETS,
    "time_start",
    "time_end",
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    source TEXT PRIMARY KEY,
    index_name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    size INTEGER, mtime REAL, etag TEXT,
    attrs TEXT NOT NULL DEFAULT '{{}}',
    variables TEXT NOT NULL DEFAULT '{{}}',
    coords TEXT NOT NULL DEFAULT '{{}}',
    skipped TEXT NOT NULL DEFAULT '[]',
    created_at TEXT, activezarr_version TEXT,
    {", ".join(f"{f} TEXT" for f in FACETS)},
    time_start TEXT, time_end TEXT
);
CREATE TABLE IF NOT EXISTS variables (
    source TEXT NOT NULL REFERENCES files(source) ON DELETE CASCADE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (source, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS variables_by_name ON variables(name, role);
CREATE TABLE IF NOT EXISTS names (
    source TEXT PRIMARY KEY,
    index_name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS combined (name TEXT PRIMARY KEY, record TEXT NOT NULL);
{"".join(f"CREATE INDEX IF NOT EXISTS files_by_{f} ON files({f});" for f in FACETS)}
CREATE INDEX IF NOT EXISTS files_by_time ON files(time_start, time_end);
"""


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def regexp(pattern: str, value: str | None) -> bool:
    """SQLite's ``value REGEXP pattern`` (a full match), which SQLite leaves to the caller."""
    return value is not None and _compiled(pattern).fullmatch(value) is not None


def db_path(directory: Path) -> Path:
    return Path(directory) / DB_NAME


def connect(directory: Path, *, create: bool = False) -> sqlite3.Connection:
    """A connection to the catalog of ``directory`` (created, and migrated, when ``create``).

    Raises ``IndexLoadError`` when there is no catalog and ``create`` is false.
    """
    directory = Path(directory)
    path = db_path(directory)
    legacy = directory / LEGACY_NAME
    if not create and not path.exists() and not legacy.exists():
        raise IndexLoadError(
            f"catalog {directory} does not exist; create it with "
            f"`activezarr index FILES --out {directory}`"
        )
    if not create and path.exists() and not _writable(directory, path):
        return _connect_read_only(path)
    directory.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    try:
        con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        if new:  # SQLite creates 0644; give the mode any new file gets, as the indexes have
            with contextlib.suppress(OSError):
                os.chmod(path, 0o666 & ~UMASK)
        con.row_factory = sqlite3.Row
        con.create_function("regexp", 2, regexp, deterministic=True)  # for shell-style globs
        con.execute("PRAGMA foreign_keys = ON")
        _use_wal(con)
        con.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: consistent after any crash
        # statement journals (every INSERT OR REPLACE writes one) in memory, not in /var/tmp
        con.execute("PRAGMA temp_store = MEMORY")
        _ensure_schema(con)
    except sqlite3.DatabaseError as exc:
        hint = "; move it away and re-index" if "not a database" in str(exc) else _full(path)
        raise IndexLoadError(f"{path}: cannot be opened as a catalog ({exc}){hint}") from exc
    if legacy.exists():
        _migrate(con, directory)
    return con


def _full(path: str | Path) -> str:
    """What SQLite's "disk I/O error" means when the catalog's file system has no room."""
    with contextlib.suppress(OSError):
        st = os.statvfs(Path(path).parent)
        if st.f_bavail * st.f_frsize < 1 << 20:
            return "; its file system is full: free some space"
    return ""


def _writable(directory: Path, path: Path) -> bool:
    """Whether the catalog can be written: the file, and its directory (for the WAL files)."""
    return os.access(path, os.W_OK) and os.access(directory, os.W_OK | os.X_OK)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A catalog that cannot be written (a read-only mount, someone else's directory), opened
    to be read: ``immutable``, since SQLite could not make its WAL index beside it. Writes
    through it fail naming the catalog (``transaction``)."""
    try:
        con = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, isolation_level=None
        )
        con.row_factory = sqlite3.Row
        con.create_function("regexp", 2, regexp, deterministic=True)
        row = con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise IndexLoadError(f"{path}: cannot be opened as a catalog ({exc})") from exc
    if row is None or int(row[0]) != SCHEMA_VERSION:
        con.close()
        raise IndexLoadError(
            f"{path}: the catalog is read-only and of another schema version "
            f"({row[0] if row else 'none'}, this activezarr reads {SCHEMA_VERSION}); open it "
            "where it can be written once, or copy the directory"
        )
    return con


def _use_wal(con: sqlite3.Connection) -> None:
    """Put the database in WAL mode, waiting out other openers doing the same.

    The switch needs the database to itself, and SQLite answers "database is locked" at
    once (the busy timeout does not apply) while another process holds it, as happens when
    several runs open a new catalog together; so it is retried, for ``BUSY_TIMEOUT_S`` at most.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.005
    while con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            if con.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                return  # a file system without WAL support: SQLite keeps its rollback journal
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)  # back off, then look again: the other opener may have switched
            pause = min(pause * 2, 0.2)


@contextlib.contextmanager
def opened(directory: Path, *, create: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection, closed at the end; one that changed the catalog refreshes the query
    planner's statistics first when the catalog has grown enough (``analyze_if_grown``)."""
    con = connect(directory, create=create)
    try:
        yield con
        if con.total_changes and not con.in_transaction:
            with contextlib.suppress(sqlite3.Error, ActiveZarrError):  # statistics are optional
                analyze_if_grown(con)
    finally:
        con.close()


ANALYZE_FROM = 64  # rows: smaller catalogs are read whole whatever the plan


def analyze_if_grown(con: sqlite3.Connection) -> bool:
    """Remake the query planner's statistics (``ANALYZE``) when the catalog has no statistics
    and ``ANALYZE_FROM`` rows, or twice the rows it had when they were made.

    Without them SQLite cannot tell a facet every file shares (``table_id=Amon``) from one
    that picks a few (``source_id=...``) and may walk the first one's index through the whole
    table. Remade each time the catalog doubles, they cost ``log2(rows)`` runs over a
    catalog.s life (0.5-1.2 s at 200,000 rows). Rows are counted by the largest rowid, which
    only grows (indexing a file again counts it again: at worst one run early).
    """
    rows = con.execute("SELECT max(rowid) FROM files").fetchone()[0] or 0
    made = con.execute("SELECT value FROM meta WHERE key = 'analyzed_rows'").fetchone()
    if rows < max(ANALYZE_FROM, 2 * int(made[0] if made else 0)):
        return False
    with transaction(con):
        con.execute("ANALYZE")
        con.execute("INSERT OR REPLACE INTO meta VALUES ('analyzed_rows', ?)", (str(rows),))
    return True


@contextlib.contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: taken at once (``BEGIN IMMEDIATE``), committed or rolled back.

    A failure of the database itself (a full disk, a lock held past ``BUSY_TIMEOUT_S``)
    becomes an ``ActiveZarrError`` naming the catalog; the catalog keeps its last state.
    """
    try:
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if con.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
        path = next((r[2] for r in con.execute("PRAGMA database_list") if r[1] == "main"), "")
        raise ActiveZarrError(
            f"{path}: cannot write the catalog ({exc}){_full(path)}; nothing of this change "
            "was kept"
        ) from exc


def _ensure_schema(con: sqlite3.Connection) -> None:
    row = None
    with contextlib.suppress(sqlite3.OperationalError):
        row = con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is not None:
        if int(row[0]) > SCHEMA_VERSION:
            raise IndexLoadError(
                f"the catalog's schema version {row[0]} is newer than this activezarr's "
                f"({SCHEMA_VERSION}); upgrade activezarr"
            )
        return
    with transaction(con):
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                con.execute(statement)
        con.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))


# -- rows -----------------------------------------------------------------------------------


def file_row(entry: dict[str, Any]) -> tuple:
    """The ``files`` row of an entry (as ``entries.make_entry`` builds it)."""
    values = []
    for column in FILE_COLUMNS:
        value = entry.get(column)
        if column == "index_name":
            value = entry["index"]
        if column in _JSON_COLUMNS:
            value = compact_json(value if value is not None else {})
        values.append(value)
    return tuple(values)


_INSERT_FILE = (
    f"INSERT OR REPLACE INTO files ({', '.join(FILE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in FILE_COLUMNS)})"
)


def put_entries(con: sqlite3.Connection, entries: Iterable[dict[str, Any]]) -> None:
    """Insert or replace the rows of ``entries`` (inside the caller's transaction)."""
    entries = list(entries)
    sources = [(e["source"],) for e in entries]
    con.executemany("DELETE FROM variables WHERE source = ?", sources)
    con.executemany(_INSERT_FILE, [file_row(e) for e in entries])
    con.executemany(
        "INSERT OR REPLACE INTO variables (source, name, role) VALUES (?, ?, ?)",
        [
            (e["source"], v, (e.get("roles") or {}).get(v, "data"))
            for e in entries
            for v in e.get("variables") or {}
        ],
    )
    con.executemany(
        "INSERT OR IGNORE INTO names (source, index_name) VALUES (?, ?)",
        [(e["source"], e["index"]) for e in entries],
    )


def put_combined(con: sqlite3.Connection, name: str, record: dict[str, Any]) -> None:
    con.execute(
        "INSERT OR REPLACE INTO combined (name, record) VALUES (?, ?)",
        (name, json.dumps(record, separators=(",", ":"))),
    )


class Combined(Mapping):
    """The combined indexes of a catalog by name; a record (with one fingerprint per
    source, which can be many) is read and parsed when first used, the names when first
    asked for. ``summaries`` gives what ``catalog ls`` shows without parsing any."""

    def __init__(self, directory: Path) -> None:
        self._directory = Path(directory)
        self._names: list[str] | None = None
        self._parsed: dict[str, dict[str, Any]] = {}

    def _keys(self) -> list[str]:
        if self._names is None:
            with opened(self._directory) as con:
                rows = con.execute("SELECT name FROM combined ORDER BY name")
                self._names = [r[0] for r in rows]
        return self._names

    def __getitem__(self, name: str) -> dict[str, Any]:
        if name not in self._parsed:
            row = None
            if name in self._keys():
                with opened(self._directory) as con:
                    sql = "SELECT record FROM combined WHERE name = ?"
                    row = con.execute(sql, (name,)).fetchone()
            if row is None:
                raise KeyError(name)
            self._parsed[name] = json.loads(row[0])
        return self._parsed[name]

    def __contains__(self, name: object) -> bool:
        return name in self._keys()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._keys()))

    def __len__(self) -> int:
        return len(self._keys())

    def refresh(self) -> None:
        """Read the names (and records) again when next used."""
        self._names = None
        self._parsed.clear()

    def forget(self, name: str) -> None:
        """Drop ``name`` from this view (after its row was deleted)."""
        if name in self._keys():
            self._keys().remove(name)
        self._parsed.pop(name, None)

    def summaries(self) -> list[dict[str, Any]]:
        """Name, variable, dimension, shape and number of sources of each, from SQL."""
        with opened(self._directory) as con:
            rows = con.execute(
                "SELECT name, json_extract(record, '$.variable'), "
                "json_extract(record, '$.concat_dim'), json_extract(record, '$.shape'), "
                "(SELECT COUNT(*) FROM json_each(record, '$.sources')) FROM combined "
                "ORDER BY name"
            ).fetchall()
        keys = ("name", "variable", "concat_dim", "shape", "sources")
        return [
            {**dict(zip(keys, r, strict=True)), "shape": json.loads(r[3]) if r[3] else None}
            for r in rows
        ]


def recorded(con: sqlite3.Connection, sources: list[str]) -> dict[str, dict[str, Any]]:
    """``{source: {"fingerprint", "index"}}`` for the sources the catalog holds."""
    out = {}
    query = "SELECT source, fingerprint, index_name FROM files WHERE source"
    for source, fp, name in rows_in(con, query, sources):
        try:
            fingerprint = json.loads(fp)
        except ValueError:  # a damaged row: the file counts as changed, and is re-indexed
            fingerprint = None
        out[source] = {"fingerprint": fingerprint, "index": name}
    return out


def rows_in(con: sqlite3.Connection, query: str, values: list[str]) -> Iterator[tuple]:
    """The rows of ``query IN (values)`` (``query`` ends with the column), 500 values a
    statement: SQLite caps the parameters of one."""
    for start in range(0, len(values), 500):
        part = values[start : start + 500]
        yield from con.execute(f"{query} IN ({', '.join('?' for _ in part)})", part)


# -- index names ----------------------------------------------------------------------------


def reserve_names(
    con: sqlite3.Connection, wanted: dict[str, str], replaced: dict[str, str] | None = None
) -> dict[str, str]:
    """The index file name of each source (``{source: preferred name}``), reserved in one
    transaction: a source keeps the name it had; a new one gets its preferred name unless
    another source holds it, then ``<stem>-<hash of the source>``.

    A source indexed again in the other format (``.json`` ↔ ``.parq``) keeps its stem with the
    new suffix; its old name goes into ``replaced`` (``{source: old name}``), for
    ``drop_replaced`` to remove once the new index is committed. The names held are read in
    a few queries and the new ones written in two (not three statements a source).
    """
    out: dict[str, str] = {}
    with transaction(con):
        held = dict(_names_where(con, "source", list(wanted)))
        renamed = [
            Path(held[s]).with_suffix(Path(n).suffix).name for s, n in wanted.items() if s in held
        ]
        holders = dict(_names_where(con, "index_name", [*set(wanted.values()), *renamed]))
        inserts, updates = [], []
        for source, name in wanted.items():
            old = held.get(source)
            if old is not None and Path(old).suffix == Path(name).suffix:
                out[source] = old
                continue
            if old is not None:
                name = Path(old).with_suffix(Path(name).suffix).name
            if holders.get(name, source) != source:
                stem, dot, suffix = name.rpartition(".")
                digest = hashlib.sha1(source.encode()).hexdigest()[:8]
                name = f"{stem}-{digest}.{suffix}" if dot else f"{name}-{digest}"
            if old is not None:
                updates.append((name, source))
                holders.pop(old, None)
                if replaced is not None:
                    replaced[source] = old
            else:
                inserts.append((source, name))
            holders[name] = source
            out[source] = name
        # updates first: a name one frees may be another's new name, never the reverse
        con.executemany("UPDATE names SET index_name = ? WHERE source = ?", updates)
        con.executemany("INSERT INTO names (source, index_name) VALUES (?, ?)", inserts)
    return out


def _names_where(
    con: sqlite3.Connection, column: Literal["source", "index_name"], values: list[str]
) -> Iterator[tuple[str, str]]:
    """``(column, the other)`` of the ``names`` rows whose ``column`` is one of ``values``
    (500 values a query)."""
    fields = "source, index_name" if column == "source" else "index_name, source"
    yield from rows_in(con, f"SELECT {fields} FROM names WHERE {column}", values)


def drop_replaced(con: sqlite3.Connection, directory: Path, replaced: dict[str, str]) -> None:
    """Remove the old-format indexes of ``replaced`` sources whose new index is committed."""
    for source, old in replaced.items():
        row = con.execute("SELECT index_name FROM files WHERE source = ?", (source,)).fetchone()
        if row is not None and row[0] != old:
            remove_index(directory, old)


def release_orphans(con: sqlite3.Connection, directory: Path) -> list[str]:
    """Delete index files whose name is reserved but never committed (a run killed between
    writing the index and committing its row), and their reservations. Call only when no
    other run is writing into ``directory``."""
    with transaction(con):
        orphans = [
            r[0]
            for r in con.execute(
                "SELECT index_name FROM names WHERE source NOT IN (SELECT source FROM files)"
            )
        ]
        con.execute("DELETE FROM names WHERE source NOT IN (SELECT source FROM files)")
    for name in orphans:
        remove_index(directory, name)
    return orphans


def remove_index(directory: Path, name: str) -> None:
    """Delete an index (JSON file or parquet directory) and its chunk-table sidecar (and the
    sidecar directory earlier versions kept)."""
    from ..index.cache import CACHE_DIR, cache_file

    index = directory / name
    for path in (index, cache_file(index), directory / CACHE_DIR / name):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


# -- migration ------------------------------------------------------------------------------


def _migrate(con: sqlite3.Connection, directory: Path) -> None:
    """Move ``catalog.json`` into the database once; rename it ``catalog.json.migrated``."""
    from .entries import roles_of, with_facets

    legacy = directory / LEGACY_NAME
    with transaction(con):
        done = con.execute("SELECT 1 FROM meta WHERE key = 'migrated'").fetchone()
        if not done:
            try:
                data = json.loads(legacy.read_text())
            except FileNotFoundError:  # another process migrated and renamed it meanwhile
                return
            except json.JSONDecodeError as exc:
                raise IndexLoadError(
                    f"{legacy}: is not valid JSON ({exc}); delete it and re-index"
                ) from exc
            entries = [
                with_facets({**e, "roles": roles_of(e.get("variables") or {})})
                for e in (data.get("entries") or {}).values()
            ]
            put_entries(con, entries)
            for name, record in (data.get("combined") or {}).items():
                put_combined(con, name, record)
            con.execute("INSERT INTO meta VALUES ('migrated', ?)", (str(len(entries)),))
    with contextlib.suppress(FileNotFoundError):
        os.replace(legacy, directory / f"{LEGACY_NAME}.migrated")
    with contextlib.suppress(FileNotFoundError):
        (directory / f"{LEGACY_NAME}.lock").unlink()


# -- one file at a time (build_index) ---------------------------------------------------------


def record_index(
    directory: Path,
    translation,
    target: Path,
    fingerprint: dict[str, Any],
    *,
    write_index: Callable[[Path, Any], None],
) -> Path:
    """Write the index under its reserved name, then commit its catalog row."""
    from .entries import make_entry

    directory = Path(directory)
    entry = make_entry(translation, fingerprint)
    with opened(directory, create=True) as con:
        name = reserve_names(con, {entry["source"]: target.name})[entry["source"]]
        target = directory / name
        write_index(target, translation)
        entry["index"] = name
        with transaction(con):
            put_entries(con, [entry])
    return target


def record_combined(directory: Path, key: str, record: dict[str, Any]) -> None:
    """List a combined index with the fingerprints of its sources."""
    from .entries import now, version

    with opened(Path(directory), create=True) as con, transaction(con):
        put_combined(con, key, {**record, "created_at": now(), "activezarr_version": version()})
