"""Is an index still true to its sources? Fingerprints now against the ones recorded at indexing.

A fingerprint is ``Source.fingerprint()`` (size + mtime locally, size + ETag remotely). The
recorded ones live in the catalog beside a local index (``catalog.db``, SQLite): for a per-file
index its row, for a combined index its ``combined`` record (the fingerprints its sources had
when it was combined). This module reads them read-only with two queries, without importing
the catalog package, so that ``Active`` and the catalog both use it and neither imports the
other. (A directory still holding only an old ``catalog.json`` is read as such.)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ActiveZarrError, StaleIndexError, one_line
from .sources import SAMPLE_BYTES, is_remote, local_path, open_source

DB_NAME = "catalog.db"
LEGACY_NAME = "catalog.json"
log = logging.getLogger(__name__)


def refresh_command(url: str, directory: Path) -> str:
    """The command that re-indexes ``url`` into ``directory``."""
    return f"activezarr index {url} --out {directory} --force"


def combine_command(directory: Path, record: dict[str, Any]) -> str:
    """The command that rebuilds the combined index described by ``record``."""
    out = "" if record.get("default_name") else f" --out {directory / record['index']}"
    return (
        f"activezarr combine --catalog {directory} --var {record['variable']} "
        f"--concat-dim {record['concat_dim']}{out}"
    )


_RECORDED: dict[tuple, tuple[dict, dict | None]] = {}  # per process, by catalog state


def _recorded(directory: Path, name: str, urls: list[str]) -> tuple[dict, dict | None]:
    """``({url: fingerprint}, combined record or None)`` for index ``name`` of ``directory``.

    Read once per state of the catalog (its database and write-ahead log unchanged): opening
    an index asks twice (confinement and freshness), and a process may open it often.
    """
    db = directory / DB_NAME
    if not db.exists():
        return _recorded_legacy(directory, name, urls)
    key = (str(db), _stamp(db), _stamp(db.with_name(db.name + "-wal")), name, tuple(urls))
    found = _RECORDED.get(key)
    if found is None:
        if len(_RECORDED) > 256:
            _RECORDED.clear()
        found = _RECORDED[key] = _query_recorded(db, name, urls)
    return found


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _query_recorded(db: Path, name: str, urls: list[str]) -> tuple[dict, dict | None]:
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        row = con.execute("SELECT record FROM combined WHERE name = ?", (name,)).fetchone()
        if row is not None:
            record = json.loads(row[0])
            return {u: record["sources"][u] for u in urls if u in record["sources"]}, record
        expected = {}
        for start in range(0, len(urls), 500):
            part = urls[start : start + 500]
            rows = con.execute(
                "SELECT source, fingerprint FROM files WHERE index_name = ? AND source IN "
                f"({', '.join('?' for _ in part)})",
                [name, *part],
            )
            expected.update({u: json.loads(fp) for u, fp in rows})
        return expected, None
    except sqlite3.DatabaseError:  # not a catalog we can read: nothing recorded to check
        return {}, None
    finally:
        con.close()


def _recorded_legacy(directory: Path, name: str, urls: list[str]) -> tuple[dict, dict | None]:
    try:
        data = json.loads((directory / LEGACY_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return {}, None
    record = (data.get("combined") or {}).get(name)
    if record is not None:
        return {u: record["sources"][u] for u in urls if u in record["sources"]}, record
    entries = data.get("entries") or {}
    return {
        u: entries[u]["fingerprint"]
        for u in urls
        if u in entries and entries[u].get("index") == name
    }, None


def check_fresh(index: str, urls: list[str], storage_options: dict | None = None) -> None:
    """Raise ``StaleIndexError`` when a source recorded in the index's catalog has changed.

    Sources the catalog does not list (an index made elsewhere, a refs dict) are not
    checked. One stat or HEAD per source, in parallel for remote ones; a remote fingerprint
    is reused for ``REMOTE_CHECK_TTL`` seconds within the process.
    """
    path = Path(index)
    directory = path.parent
    if "://" in str(index) or not (
        (directory / DB_NAME).exists() or (directory / LEGACY_NAME).exists()
    ):
        return
    expected, combined = _recorded(directory, path.name, list(urls))
    again = f" && {combine_command(directory, combined)}" if combined is not None else ""
    for url, now in _recent_fingerprints(list(expected), storage_options).items():
        refresh = f"refresh with `{refresh_command(url, directory)}{again}`"
        if isinstance(now, Exception):
            raise unchecked(url, index, now, directory) from now
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


# -- the fingerprints an index records itself (its ``activezarr`` member) ---------------------

# Local sources: the digest of a file whose size, mtime, ctime and inode did not change is reused
# within the process; remote ones are checked again after ``REMOTE_CHECK_TTL`` seconds.
_digests: dict[tuple, str] = {}
_remote_records: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}


def current_record(
    url: str, storage_options: dict | None, sample: int, policy=None
) -> dict[str, Any]:
    """The fingerprint of ``url`` now, with the digest of its first and last ``sample`` bytes
    (``policy``: the ``network.ReadPolicy`` of remote reads)."""
    source = open_source(url, storage_options, policy)
    if not source.remote:
        log.debug("fingerprint of %s taken", url)
        st = os.stat(source.url)
        key = (source.url, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, sample)
        with _recent_lock:
            digest = _digests.get(key)
        if digest is None:
            digest = source.content_digest(st.st_size, sample)
            with _recent_lock:
                _digests[key] = digest
        return {"size": st.st_size, "mtime": st.st_mtime, "sha256": digest, "sample": sample}
    options = json.dumps(storage_options or {}, sort_keys=True, default=str)
    now = time.monotonic()
    with _recent_lock:
        hit = _remote_records.get((url, options))
    if hit is not None and now - hit[0] < REMOTE_CHECK_TTL and hit[1].get("sample") == sample:
        return hit[1]
    log.debug("fingerprint of %s taken", url)
    source.filesystem().invalidate_cache(url)
    fingerprint = source.fingerprint()
    record = {
        **fingerprint,
        "sha256": source.content_digest(fingerprint["size"], sample),
        "sample": sample,
    }
    with _recent_lock:
        _remote_records[(url, options)] = (now, record)
    return record


def _readable(key: str, value: Any) -> Any:
    """A modification time as a UTC date and time; other values as they are."""
    if key == "mtime" and isinstance(value, int | float):
        with contextlib.suppress(OverflowError, OSError, ValueError):
            when = dt.datetime.fromtimestamp(value, dt.UTC)
            return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


def differences(was: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What changed between two fingerprints, as people read it (``size was 10, now 12``)."""
    out = []
    for key, what in (("size", "size"), ("mtime", "mtime"), ("etag", "ETag")):
        if key in was and was[key] != now.get(key):
            before, after = (_readable(key, v) for v in (was[key], now.get(key)))
            out.append(f"{what} was {before}, now {after}")
    if "sha256" in was and was["sha256"] != now.get("sha256"):
        out.append(f"the first and last {was.get('sample', SAMPLE_BYTES)} bytes differ")
    return out


def _gone(url: str) -> bool:
    """A local source that no longer exists (re-indexing it cannot help)."""
    return not is_remote(url) and not os.path.exists(local_path(url))


def _gone_message(url: str, index: str, directory) -> str:
    if directory is not None and (Path(directory) / DB_NAME).exists():
        fix = f"remove its entries with `activezarr catalog prune --catalog {directory}`"
        return f"{url}, indexed into {index}, no longer exists; {fix} (or restore the file)"
    return f"{url}, indexed into {index}, no longer exists; restore it, or index it where it is now"


def unchecked(
    url: str, index: str, exc: BaseException, directory, skip: bool = True
) -> StaleIndexError:
    """The error for a source whose fingerprint could not be read: a local file gone, or
    what happened (a network failure, a refused credential) and how to go on. Re-indexing
    would meet the same failure, so the fix is to retry once the source answers, or
    (``skip``: where there is the option) to skip the check."""
    from .sources import remote_failure

    if _gone(url):
        return StaleIndexError(_gone_message(url, index, directory))
    if isinstance(exc, ActiveZarrError) or not is_remote(url):
        text = str(exc) if isinstance(exc, ActiveZarrError) else f"{type(exc).__name__}: {exc}"
    else:
        text = remote_failure(url, exc)
    reason = one_line(text.removeprefix(f"{url}: "))
    what = f"{url}, a source of {index}, could not be checked for changes: {reason}; retry when"
    if not skip:
        return StaleIndexError(f"{what} it can be read")
    return StaleIndexError(
        f"{what} it can be read, or pass check_stale=False to skip the check",
        cli=f"{what} it can be read, or add --no-check-stale to skip the check",
    )


def take_records(
    recorded: dict[str, dict], storage_options: dict | None, policy=None
) -> dict[str, Any]:
    """Each recorded source's ``current_record`` now (with the sample its record names), or the
    exception that prevented it: local sources in turn, remote ones in parallel."""

    def probe(item):
        url, was = item
        try:
            sample = was.get("sample", SAMPLE_BYTES)
            if not isinstance(sample, int) or not 0 < sample <= 2**20:
                sample = SAMPLE_BYTES
            return url, current_record(url, storage_options, sample, policy)
        except Exception as exc:  # noqa: BLE001 - reported by the caller, with the source named
            return url, exc

    items = list(recorded.items())
    remote = [i for i in items if is_remote(i[0])]
    out = dict(probe(i) for i in items if not is_remote(i[0]))
    if remote:
        import concurrent.futures as cf

        with cf.ThreadPoolExecutor(min(16, len(remote))) as pool:
            out.update(pool.map(probe, remote))
    return out


def check_recorded(
    index: str,
    recorded: dict[str, dict],
    storage_options: dict | None,
    policy=None,
    contents_only: bool = False,
    taken: dict[str, dict] | None = None,
) -> dict[str, dict]:
    """Raise ``StaleIndexError`` when a source the index records (``recorded``: URL →
    fingerprint from its ``activezarr`` member) changed: one stat or HEAD and two small reads
    per source, remote ones in parallel. ``contents_only``: compare the size and the digest
    of the contents (the mtime only where no digest was recorded), not when it was written.
    ``taken``: records of some of them already taken in this open (``vouch_sources``), used
    instead of taking them again. Returns every source's record as compared."""
    now = {u: taken[u] for u in recorded if taken and u in taken}
    now.update(
        take_records({u: w for u, w in recorded.items() if u not in now}, storage_options, policy)
    )
    directory = Path(index).parent if "://" not in index and index != "<refs dict>" else None
    out = directory if directory is not None else "DIR"
    for url in sorted(recorded, key=is_remote):  # local sources first, as they were taken
        _compare(index, url, recorded[url], now[url], out, contents_only)
    return now


def _compare(index: str, url: str, was: dict, now, out, contents_only: bool) -> None:
    """Raise ``StaleIndexError`` unless ``now`` (a record, or why none was taken) matches
    ``was`` (see ``check_recorded``); ``out`` is where the refresh command writes."""
    refresh = f"refresh with `{refresh_command(url, out)}`"
    if isinstance(now, Exception):
        # vouching (contents_only) happens whatever check_stale: no skipping it
        raise unchecked(url, index, now, out, skip=not contents_only) from now
    if contents_only:
        keys = ("size", "sha256", "sample") if "sha256" in was else ("size", "mtime")
        was = {k: v for k, v in was.items() if k in keys}
        if not any(k in was for k in ("sha256", "mtime")):
            raise StaleIndexError(
                f"{url} is recorded by {index} without a fingerprint to check it by; {refresh}"
            )
    changed = differences(was, now)
    if changed:
        raise StaleIndexError(
            f"{url} changed since it was indexed into {index} ({'; '.join(changed)}); {refresh}"
        )


def vouch_sources(
    index: str, recorded: dict[str, dict], urls: list[str], allow_paths: list | tuple = ()
) -> dict[str, dict]:
    """Raise ``StaleIndexError`` unless every recorded local source whose directory admits one
    of the local ``urls`` (one outside ``allow_paths``) is the file the index recorded (its
    size and contents: ``check_recorded(contents_only=True)``). Returns the records taken, so
    that the freshness check of the same open does not take them again.

    A recorded source is what lets an index read the files of its directory, so an index
    cannot widen where reads go by recording a file whose contents its author does not know.
    This holds whatever ``check_stale`` says (symlinks resolved as ``validate.confine`` does).
    """
    local = [u for u in urls if not is_remote(u)]
    if not allow_paths and all(u in recorded for u in local):
        # the usual index, its chunks in its own sources: those are the files to vouch for
        # (a URL admitted through another source's directory is still its own: checked)
        dirs = {u: os.path.dirname(local_path(u)) for u in local}
        needed = {u: (dirs[u], recorded[u]) for u in local}
    else:
        needed = _needed_sources(recorded, local, allow_paths)
    if not needed:
        return {}
    try:
        return check_recorded(
            index, {u: fp for u, (_, fp) in needed.items()}, None, contents_only=True
        )
    except StaleIndexError as exc:
        url = next((u for u in needed if u in str(exc)), next(iter(needed)))
        directory = needed[url][0]
        why = (
            f"; the index may read files in {directory} only while {url} is the file it "
            "recorded, with or without check_stale; to read them anyway"
        )
        raise StaleIndexError(
            f"{exc}{why} pass allow_paths=[{directory!r}]",
            cli=f"{exc.cli or exc}{why} add --allow-path {directory}",
        ) from exc


def _needed_sources(
    recorded: dict[str, dict], local: list[str], allow_paths
) -> dict[str, tuple[str, dict]]:
    """The recorded local sources whose directory admits one of the ``local`` URLs outside
    ``allow_paths`` (symlinks resolved): source → (its directory, its fingerprint)."""
    dirs: dict[str, list[str]] = {}
    for url in recorded:
        if not is_remote(url):
            real = os.path.realpath(os.path.dirname(local_path(url)))
            dirs.setdefault(real, []).append(url)
    allowed = [os.path.realpath(os.fspath(p)) for p in allow_paths]
    needed: dict[str, tuple[str, dict]] = {}
    for url in local if dirs else ():
        real = os.path.realpath(local_path(url))
        if _under(real, allowed):
            continue
        for directory, sources in dirs.items():
            if _under(real, [directory]):
                needed.update((s, (directory, recorded[s])) for s in sources)
    return needed


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def check_variable_fresh(index: str, var, storage_options: dict | None = None, policy=None) -> None:
    """Check the sources of ``var`` (a ``VariableIndex``): against the fingerprints its index
    records when it has them, else against the catalog beside the index (``check_fresh``)."""
    if var.sources:
        taken, var.taken = var.taken, {}  # records of this open only: a later check takes its own
        check_recorded(index, var.sources, storage_options, policy, taken=taken)
    elif index != "<refs dict>":
        check_fresh(index, var.urls, storage_options)
