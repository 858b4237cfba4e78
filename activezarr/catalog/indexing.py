"""Indexing many files: expand paths and globs, skip up-to-date ones, run in parallel, report.

``index_many`` never stops at a bad file: every failure is collected and printed in a summary
at the end, and the caller's exit code says whether any failed. Progress goes to stderr as a
bar on a terminal and as plain log lines otherwise.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import glob
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import ActiveZarrError, IndexBuildError
from ..index.build import _write as write_index  # the writer build_index uses
from ..index.build import index_path_for, translate
from ..index.freshness import fingerprints
from ..index.sources import is_remote, open_source
from .store import read_catalog, record_index

IndexFormat = Literal["json", "parquet"]


@dataclass
class IndexReport:
    """What one ``activezarr index`` run did."""

    indexed: list[tuple[str, Path]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # up to date
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


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


def up_to_date(out: Path, path: str, storage_options: dict | None) -> bool:
    """The catalog holds an entry for ``path`` with the same fingerprint and its index exists."""
    entries = read_catalog(out)["entries"]
    source = open_source(path, storage_options)
    entry = entries.get(source.url)
    if not entry or not (out / entry["index"]).exists():
        return False
    try:
        return entry.get("fingerprint") == source.fingerprint()
    except IndexBuildError:
        return False


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


class Progress:
    """Files done, chunks, bytes, rate and ETA: a one-line bar on a terminal, log lines
    otherwise."""

    def __init__(self, total: int, stream=None) -> None:
        self.total = total
        self.done = 0
        self.chunks = 0
        self.nbytes = 0
        self.stream = sys.stderr if stream is None else stream
        self.tty = self.stream.isatty()
        self.start = time.monotonic()

    def step(self, message: str, chunks: int = 0, nbytes: int = 0) -> None:
        self.done += 1
        self.chunks += chunks
        self.nbytes += nbytes
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate else 0.0
        line = (
            f"[{self.done}/{self.total}] {self.chunks} chunks, {_size(self.nbytes)} indexed, "
            f"{rate:.1f} files/s, {_size(self.nbytes / elapsed if elapsed > 0 else 0)}/s, "
            f"ETA {eta:.0f}s {message}"
        )
        if self.tty:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r{bar} {line[:120]:<120}")
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


@dataclass(frozen=True)
class IndexedFile:
    """What indexing one file produced (small and picklable: it may come from a worker)."""

    target: Path
    warnings: list[str]
    n_chunks: int
    nbytes: int


def _index_one(
    path: str, out: Path, storage_options: dict | None, format: IndexFormat = "json"
) -> IndexedFile:
    """``build_index`` that also reports the chunks and bytes it indexed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = open_source(path, storage_options)
        fingerprint = source.fingerprint()
        translation = translate(source)
        target, write = index_path_for(source, out), write_index
        if format == "parquet":
            from ..index.parquet import write_parquet

            target, write = target.with_suffix(".parq"), write_parquet
        target = record_index(out, translation, target, fingerprint, write_index=write)
    return IndexedFile(
        target,
        [str(w.message) for w in caught],
        sum(v.n_chunks for v in translation.variables),
        sum(v.stored_bytes for v in translation.variables),
    )


def index_many(
    paths: list[str],
    out: str | Path = "indexes",
    *,
    jobs: int = 1,
    force: bool = False,
    storage_options: dict | None = None,
    from_list: str | None = None,
    progress: bool = True,
    executor: cf.Executor | None = None,
    format: IndexFormat = "json",
) -> IndexReport:
    """Index every file; print a summary of what was indexed, skipped and failed.

    Parameters
    ----------
    paths : list of str
        Files, globs (``data/*.nc``, ``s3://bucket/**/*.nc``) or URLs.
    out : str or Path
        Directory of the indexes and ``catalog.json``.
    jobs : int
        Files indexed at the same time on a local thread pool.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Index there instead (e.g. on a dask cluster whose workers see ``out`` and the files).
    format : {"json", "parquet"}
        Index format, as for ``build_index``.

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
    report = IndexReport()
    if not force:
        fresh = _unchanged(out, todo, storage_options)
        report.skipped += [p for p in todo if p in fresh]
        todo = [p for p in todo if p not in fresh]
    bar = Progress(len(todo)) if progress and todo else None
    with _executor(executor, jobs) as pool:
        futures = {pool.submit(_index_one, p, out, storage_options, format): p for p in todo}
        for fut in cf.as_completed(futures):
            path = futures[fut]
            done = None
            try:
                done = fut.result()
            except ActiveZarrError as exc:
                report.failed.append((path, str(exc)))
            except Exception as exc:  # noqa: BLE001 - reported in the summary, exit code 1
                report.failed.append((path, f"{type(exc).__name__}: {exc}"))
            if done is None:
                message = f"FAILED {path}"
            else:
                report.indexed.append((path, done.target))
                report.warnings += done.warnings
                message = f"{path} -> {done.target}"
            if bar:
                bar.step(message, done.n_chunks if done else 0, done.nbytes if done else 0)
    _print_summary(report)
    return report


@contextlib.contextmanager
def _executor(executor, jobs: int) -> Iterator[cf.Executor]:
    """The caller's executor (a dask Client becomes its executor), or a local thread pool."""
    if executor is None:
        with cf.ThreadPoolExecutor(max(1, jobs), "activezarr-index") as pool:
            yield pool
    elif hasattr(executor, "get_executor"):
        # pure=False: re-indexing a changed file must run again, not reuse a cached result
        yield executor.get_executor(pure=False)
    else:
        yield executor


def _unchanged(out: Path, paths: list[str], storage_options: dict | None) -> set[str]:
    """The paths whose catalog entry matches their fingerprint and whose index exists
    (one read of the catalog; remote fingerprints fetched in parallel)."""
    entries = read_catalog(out)["entries"]
    urls = {p: open_source(p, storage_options).url for p in paths}
    known = {p: entries[u] for p, u in urls.items() if u in entries}
    known = {p: e for p, e in known.items() if (out / e["index"]).exists()}
    now = fingerprints([urls[p] for p in known], storage_options)
    return {p for p, e in known.items() if now[urls[p]] == e.get("fingerprint")}


def _print_summary(report: IndexReport) -> None:
    for path, target in report.indexed:
        print(f"indexed {path} -> {target}")
    for path in report.skipped:
        print(f"up to date {path} (use --force to rebuild)")
    for message in report.warnings:
        print(f"warning: {message}", file=sys.stderr)
    if report.failed:
        total = len(report.failed) + len(report.indexed) + len(report.skipped)
        print(f"{len(report.failed)} of {total} files failed:", file=sys.stderr)
    for path, reason in report.failed:
        shown = reason if path in reason else f"{path}: {reason}"
        print(f"activezarr: error: {shown}", file=sys.stderr)
