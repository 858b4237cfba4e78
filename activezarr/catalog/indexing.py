"""Indexing many files into one catalog: expand paths, skip unchanged ones, index in worker
processes, commit catalog rows in batches, report.

* Workers (processes: h5py serialises threads; or a dask cluster) translate a file and write
  its index under a name the parent reserved in the catalog; the parent commits the rows in
  batches, one short transaction each, so the cost of a file does not grow with the catalog.
* ``index_many`` never stops at a bad file: failures are collected and printed in a summary
  at the end, and the caller's exit code says whether any failed.
* Ctrl-C cancels pending files, stops the workers, commits what was finished, prints the
  summary and raises ``KeyboardInterrupt``; a rerun resumes. A run that finds itself alone in
  the directory removes what a killed run left (temporary files, uncommitted indexes).
* A rerun over unchanged files is a fingerprint sweep (one stat or HEAD each).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import fcntl
import gc
import glob
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ActiveZarrError, one_line, redact, shown
from ..index.build import index_path_for, translate, write_index
from ..index.freshness import fingerprints
from ..index.sources import is_remote, open_source
from . import store
from .progress import Progress

log = logging.getLogger(__name__)

IndexFormat = Literal["json", "parquet"]
RUN_DIR = ".activezarr-runs"  # one lock file per running index run
RUN_LOCK = ".activezarr-runs.lock"
DIGEST = ("sha256", "sample")  # what an index records of its source beyond the fingerprint
COMMIT_EVERY_S = 1.0  # the parent commits finished rows at least this often
COMMIT_BATCH = 500  # ... or every this many rows


@dataclass
class IndexReport:
    """What one ``activezarr index`` run did."""

    indexed: list[tuple[str, Path]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # up to date
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False
    cancelled: int = 0  # files not indexed because of an interrupt


def read_path_list(path: str) -> list[str]:
    """Paths from a text file (one per line) or a CSV with a ``path`` column."""
    text = Path(path).read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if lines and "," in lines[0] and "path" in [c.strip() for c in lines[0].split(",")]:
        return [row["path"].strip() for row in csv.DictReader(lines) if row.get("path")]
    return [ln.strip() for ln in lines]


def expand_paths(paths: list[str], storage_options: dict | None = None) -> list[str]:
    """Expand local and remote globs; keep everything else as given (errors come later)."""
    out: list[str] = []
    for p in paths:
        if not any(ch in p for ch in "*?["):
            out.append(p)
        elif is_remote(p):
            from ..index.sources import remote_filesystem

            protocol = p.split("://", 1)[0]
            fs = remote_filesystem(protocol, storage_options)
            out += [f"{protocol}://{m}" for m in sorted(fs.glob(p))]
        else:
            matches = sorted(glob.glob(p, recursive=True))
            out += matches if matches else [p]
    return list(dict.fromkeys(out))


# -- one file (runs in a worker) ------------------------------------------------------------


@dataclass(frozen=True)
class IndexedFile:
    """What indexing one file produced (small and picklable: it comes from a worker)."""

    entry: dict[str, Any]
    warnings: list[str]
    n_chunks: int
    nbytes: int


def index_one(
    path: str, target: Path, storage_options: dict | None, format: IndexFormat = "json"
) -> IndexedFile:
    """Translate ``path``, write its index to ``target``; return its catalog entry."""
    from .entries import make_entry

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        translation = translate(open_source(path, storage_options))
        # the fingerprint the catalog compares on a rerun: the recorded one less the digest
        fingerprint = {k: v for k, v in translation.fingerprint.items() if k not in DIGEST}
        entry = make_entry(translation, fingerprint)
        if format == "parquet":
            from ..index.parquet import write_parquet

            write_parquet(target, translation)
        else:
            write_index(target, translation, durable=False)  # see docs/catalog.md, Crash-safe
    entry["index"] = target.name
    summary = entry["variables"].values()
    return IndexedFile(
        entry,
        [str(w.message) for w in caught],
        sum(v["n_chunks"] for v in summary),
        sum(v["nbytes"] for v in summary),
    )


def index_batch(
    paths: list[str], targets: list[Path], storage_options: dict | None, format: IndexFormat
) -> list[tuple[str, IndexedFile | None, str | None]]:
    """``index_one`` over several files in one task: ``(path, result, None)`` or
    ``(path, None, reason)`` for each (one task per file would leave the workers waiting on a
    busy parent for their next file)."""
    out = []
    for path, target in zip(paths, targets, strict=True):
        try:
            out.append((path, index_one(path, target, storage_options, format), None))
        except Exception as exc:  # noqa: BLE001 - reported in the summary
            out.append((path, None, _reason(exc)))
    return out


def batch_size(files: int, workers: int) -> int:
    """Files per task: up to 32, and at least 8 tasks per worker so that they finish together."""
    return max(1, min(32, files // (8 * max(1, workers))))


def _worker_init() -> None:
    """Workers leave Ctrl-C to the parent, which stops them when it decides to; and freeze
    the objects they inherit, which the garbage collector then never walks (a walk writes
    to every object, copying the parent's pages into each worker: ~6% of a worker's CPU)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()


# -- many files -----------------------------------------------------------------------------


def index_many(
    paths: list[str],
    out: str | Path = "indexes",
    *,
    jobs: int | None = None,
    force: bool = False,
    storage_options: dict | None = None,
    from_list: str | None = None,
    progress: bool = True,
    executor: cf.Executor | None = None,
    format: IndexFormat = "json",
) -> IndexReport:
    """Index every file into ``out`` and its catalog; print a summary.

    Parameters
    ----------
    paths : list of str
        Files, globs (``data/*.nc``, ``s3://bucket/**/*.nc``) or URLs.
    out : str or Path
        Directory of the indexes and the catalog (``catalog.db``).
    jobs : int, optional
        Worker processes (default: the number of CPUs; 1 indexes in this process).
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Index there instead (e.g. on a dask cluster whose workers see ``out`` and the files).
    format : {"json", "parquet"}
        Index format, as for ``build_index``.

    Raises
    ------
    KeyboardInterrupt
        After Ctrl-C, once the finished files are committed and the summary printed.

    Examples
    --------
    >>> index_many(["data/*.nc"], "indexes", jobs=4)  # doctest: +SKIP
    """
    out = Path(out)
    if format not in ("json", "parquet"):
        raise ActiveZarrError(f"unknown index format {format!r}; use 'json' or 'parquet'")
    if from_list:
        paths = list(paths) + read_path_list(from_list)
    todo = expand_paths(paths, storage_options)
    if not todo:
        raise ActiveZarrError("no files to index: give paths, globs or --from-list FILE")
    jobs = jobs if jobs is not None else default_jobs()
    report = IndexReport()
    out.mkdir(parents=True, exist_ok=True)
    with _run_lock(out) as alone, store.opened(out, create=True) as con:
        with alone() as nobody_else:
            if nobody_else:
                _clean_up(con, out)
        urls = {p: open_source(p, storage_options).url for p in todo}
        if not force:
            fresh = _unchanged(con, out, urls, storage_options)
            report.skipped += [p for p in todo if p in fresh]
            todo = [p for p in todo if p not in fresh]
        replaced: dict[str, str] = {}  # sources indexed before in the other format
        wanted = {urls[p]: _preferred(urls[p], out, format) for p in todo}
        names = store.reserve_names(con, wanted, replaced)
        targets = {p: out / names[urls[p]] for p in todo}
        bar = Progress(len(todo), enabled=progress and bool(todo))
        try:
            _run(todo, targets, storage_options, format, jobs, executor, con, report, bar)
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            bar.close()
            store.drop_replaced(con, out, replaced)
            with alone() as nobody_else:
                if nobody_else:
                    _clean_up(con, out)
    _print_summary(report)
    if report.interrupted:
        raise KeyboardInterrupt
    return report


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _preferred(url: str, out: Path, format: IndexFormat) -> str:
    name = index_path_for(open_source(url), out).name
    return str(Path(name).with_suffix(".parq")) if format == "parquet" else name


def _run(todo, targets, storage_options, format, jobs, executor, con, report, bar) -> None:
    """Index ``todo``, committing finished rows in batches; on Ctrl-C commit what finished."""
    with _shielding() as shield:
        _run_shielded(
            todo, targets, storage_options, format, jobs, executor, con, report, bar, shield
        )


@contextlib.contextmanager
def _shielding():
    """Yield ``shield``: a context in which Ctrl-C waits until the context ends (so that a
    file's row and its line in the report are added together, and a commit is not cut)."""
    state = {"depth": 0, "pending": False}

    def handler(signum, frame):
        if state["depth"]:
            state["pending"] = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def shield():
        state["depth"] += 1
        try:
            yield
        finally:
            state["depth"] -= 1
            if not state["depth"] and state["pending"]:
                state["pending"] = False
                raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield contextlib.nullcontext  # signals only reach the main thread
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield shield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_shielded(
    todo, targets, storage_options, format, jobs, executor, con, report, bar, shield
) -> None:
    pending: list[dict[str, Any]] = []
    last_commit = time.monotonic()

    def finished(path: str, done: IndexedFile | None, error: str | None) -> None:
        nonlocal last_commit
        if done is None:
            report.failed.append((path, error or "failed"))
            log.info("failed %s: %s", path, error)
            bar.step(f"FAILED {path}")
        else:
            with shield():  # the row and the report agree even if Ctrl-C comes now
                pending.append(done.entry)
                report.indexed.append((path, targets[path]))
            log.info("indexed %s -> %s", path, targets[path])
            report.warnings += done.warnings
            bar.step(f"{path} -> {targets[path]}", done.n_chunks, done.nbytes)
        if len(pending) >= COMMIT_BATCH or time.monotonic() - last_commit >= COMMIT_EVERY_S:
            with shield():
                _commit(con, pending, report)
            last_commit = time.monotonic()

    try:
        if executor is None and (jobs <= 1 or len(todo) <= 1):
            for i, path in enumerate(todo):
                try:
                    finished(path, index_one(path, targets[path], storage_options, format), None)
                except KeyboardInterrupt:
                    report.cancelled = len(todo) - i
                    raise
                except Exception as exc:  # noqa: BLE001 - reported in the summary
                    finished(path, None, _reason(exc))
            return
        size = batch_size(len(todo), jobs)
        batches = [todo[i : i + size] for i in range(0, len(todo), size)]
        with _executor(
            executor, min(jobs, len(batches))
        ) as pool:  # --jobs 10**20: as many as tasks
            futures = {
                pool.submit(index_batch, b, [targets[p] for p in b], storage_options, format): b
                for b in batches
            }
            try:
                for fut in cf.as_completed(futures):
                    try:
                        results = fut.result()
                    except Exception as exc:  # noqa: BLE001 - reported in the summary
                        results = [(p, None, _reason(exc)) for p in futures[fut]]
                    for path, done, error in results:
                        finished(path, done, error)
            except KeyboardInterrupt:
                report.cancelled = sum(len(b) for f, b in futures.items() if not f.done())
                _stop(pool, futures)
                raise
    finally:
        with shield():
            _commit(con, pending, report)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ActiveZarrError):
        return str(exc)
    if isinstance(exc, cf.process.BrokenProcessPool):
        return f"a worker process died ({exc}); rerun to index the rest"
    return f"{type(exc).__name__}: {exc}"


def _commit(con, pending: list[dict[str, Any]], report: IndexReport) -> None:
    """Commit the finished rows; if the catalog cannot take them (a full disk), those files
    count as failed and the catalog keeps its last committed state."""
    if not pending:
        return
    try:
        with store.transaction(con):
            store.put_entries(con, pending)
    except ActiveZarrError as exc:
        sources = {e["source"] for e in pending}
        lost = [(p, t) for p, t in report.indexed if open_source(p).url in sources]
        report.indexed = [x for x in report.indexed if x not in lost]
        report.failed += [(p, str(exc)) for p, _ in lost]
    pending.clear()


@contextlib.contextmanager
def _executor(executor, jobs: int) -> Iterator[cf.Executor]:
    """The caller's executor (a dask Client becomes its executor), or local processes."""
    if executor is None:
        context = multiprocessing.get_context(_start_method())
        pool = cf.ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init)
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    elif hasattr(executor, "get_executor"):
        # pure=False: re-indexing a changed file must run again, not reuse a cached result
        yield executor.get_executor(pure=False)
    else:
        yield executor


def _start_method() -> str | None:
    """``fork`` from a single-threaded process (quick, and the caller's script is not imported
    again in each worker); otherwise ``forkserver``, since forking a process that runs threads
    (an event loop, a dask client) can deadlock the child."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else None


def _stop(pool: cf.Executor, futures) -> None:
    """Cancel what has not started; stop local worker processes at once."""
    for fut in futures:
        fut.cancel()
    if isinstance(pool, cf.ProcessPoolExecutor):
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            with contextlib.suppress(Exception):
                proc.kill()
        for proc in processes:
            with contextlib.suppress(Exception):
                proc.join(5)


def _unchanged(con, out: Path, urls: dict[str, str], storage_options) -> set[str]:
    """The paths whose catalog row matches their fingerprint and whose index exists
    (one query per 500 files; remote fingerprints fetched in parallel)."""
    recorded = store.recorded(con, list(set(urls.values())))
    known = {p: recorded[u] for p, u in urls.items() if u in recorded}
    known = {p: r for p, r in known.items() if (out / r["index"]).exists()}
    now = fingerprints([urls[p] for p in known], storage_options)
    return {p for p, r in known.items() if now[urls[p]] == r["fingerprint"]}


# -- runs in one directory ------------------------------------------------------------------


@contextlib.contextmanager
def _run_lock(out: Path):
    """Register this run in ``out`` for its duration; yield a function that says whether it is
    alone in the directory right now, and that holds the directory's lock while it says yes.

    Each run holds an exclusive ``flock`` on its own file in ``.activezarr-runs/`` (a lock the
    kernel drops when the process dies, even by ``kill -9``); a run's file is created, and
    other runs' files are tested, under the exclusive lock of ``RUN_LOCK``. So a run that
    sees every other file unlocked knows no other run is writing, and none can start until it
    has cleaned up.
    """
    runs = out / RUN_DIR
    runs.mkdir(parents=True, exist_ok=True)
    with open(out / RUN_LOCK, "a") as gate:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            mine = runs / f"{os.getpid()}-{os.urandom(4).hex()}.lock"
            own = open(mine, "a")  # noqa: SIM115 - held for the whole run
            fcntl.flock(own, fcntl.LOCK_EX)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def alone() -> Iterator[bool]:
        with open(out / RUN_LOCK, "a") as gate:
            fcntl.flock(gate, fcntl.LOCK_EX)
            yield _others_gone(runs, mine)

    try:
        yield alone
    finally:
        mine.unlink(missing_ok=True)
        own.close()


def _others_gone(runs: Path, mine: Path) -> bool:
    """True when no other run holds its lock file (files of dead runs are removed)."""
    gone = True
    for other in runs.glob("*.lock"):
        if other == mine:
            continue
        try:
            with open(other, "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                other.unlink(missing_ok=True)  # its run died without removing it
        except BlockingIOError:
            gone = False
        except FileNotFoundError:
            continue
    return gone


def _clean_up(con, out: Path) -> None:
    """Remove temporary files and uncommitted indexes that killed runs left in ``out``.

    Called only while no other run holds the directory's run lock: a run that started in
    between waits for the shared lock this one converts back to, so nothing live is removed.
    """
    from ..index.cache import CACHE_DIR

    store.release_orphans(con, out)
    for tmp in out.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    for tmp in out.glob(".*.parq.*"):  # parquet indexes are written as a temporary directory
        shutil.rmtree(tmp, ignore_errors=True)
    for tmp in (out / CACHE_DIR).glob(".*.tmp"):  # chunk-table sidecars being written
        tmp.unlink(missing_ok=True)


def _print_summary(report: IndexReport) -> None:
    for path, target in report.indexed:
        print(f"indexed {shown(redact(path))} -> {shown(target)}")
    for path in report.skipped:
        print(f"up to date {shown(redact(path))} (use --force to rebuild)")
    for message in report.warnings:
        print(f"warning: {one_line(message)}", file=sys.stderr)
    if report.interrupted:
        print(
            f"interrupted: {len(report.indexed)} indexed, {len(report.skipped)} up to date, "
            f"{len(report.failed)} failed, {report.cancelled} not started; "
            "run the same command again to resume",
            file=sys.stderr,
        )
    if len(report.failed) > 1:  # one failure is its own line
        total = len(report.failed) + len(report.indexed) + len(report.skipped)
        print(f"{len(report.failed)} of {total} files failed:", file=sys.stderr)
    for path, reason in report.failed:
        line = reason if redact(path) in redact(reason) else f"{path}: {reason}"
        print(f"activezarr: error: {one_line(line)}", file=sys.stderr)
