"""Indexing many files: expand paths and globs, skip up-to-date ones, run in parallel, report.

``index_many`` never stops at a bad file: every failure is collected and printed in a summary
at the end, and the caller's exit code says whether any failed. Progress goes to stderr as a
bar on a terminal and as plain log lines otherwise.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import glob
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import read_catalog
from .errors import ActiveZarrError, IndexBuildError
from .index.build import build_index
from .index.sources import is_remote, open_source


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
            import fsspec

            protocol = p.split("://", 1)[0]
            fs = fsspec.filesystem(protocol, **(storage_options or {}))
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


class Progress:
    """A one-line progress bar on a terminal; log lines otherwise."""

    def __init__(self, total: int, stream=sys.stderr) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.tty = stream.isatty()
        self.start = time.monotonic()

    def step(self, message: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate else 0.0
        line = f"[{self.done}/{self.total}] {rate:.1f} files/s ETA {eta:.0f}s {message}"
        if self.tty:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r{bar} {line[:100]:<100}")
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _index_one(path: str, out: Path, storage_options: dict | None):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        target = build_index(path, out, storage_options=storage_options)
    return target, [str(w.message) for w in caught]


def index_many(
    paths: list[str],
    out: str | Path = "indexes",
    *,
    jobs: int = 1,
    force: bool = False,
    storage_options: dict | None = None,
    from_list: str | None = None,
    progress: bool = True,
) -> IndexReport:
    """Index every file; print a summary of what was indexed, skipped and failed."""
    out = Path(out)
    if from_list:
        paths = list(paths) + read_path_list(from_list)
    todo = expand_paths(paths, storage_options)
    if not todo:
        raise ActiveZarrError("no files to index: give paths, globs or --from-list FILE")
    report = IndexReport()
    if not force:
        fresh = [p for p in todo if _quiet_up_to_date(out, p, storage_options)]
        report.skipped += fresh
        todo = [p for p in todo if p not in set(fresh)]
    bar = Progress(len(todo)) if progress and todo else None
    with cf.ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = {pool.submit(_index_one, p, out, storage_options): p for p in todo}
        for fut in cf.as_completed(futures):
            path = futures[fut]
            try:
                target, caught = fut.result()
            except ActiveZarrError as exc:
                report.failed.append((path, str(exc)))
                message = f"FAILED {path}"
            else:
                report.indexed.append((path, target))
                report.warnings += caught
                message = f"{path} -> {target}"
            if bar:
                bar.step(message)
    _print_summary(report)
    return report


def _quiet_up_to_date(out: Path, path: str, storage_options: dict | None) -> bool:
    try:
        return up_to_date(out, path, storage_options)
    except ActiveZarrError:
        return False


def _print_summary(report: IndexReport) -> None:
    for path, target in report.indexed:
        print(f"indexed {path} -> {target}")
    for path in report.skipped:
        print(f"up to date {path} (use --force to rebuild)")
    for message in report.warnings:
        print(f"warning: {message}", file=sys.stderr)
    for path, reason in report.failed:
        print(f"activezarr: error: {reason}", file=sys.stderr)
    if report.failed:
        print(
            f"{len(report.failed)} of {len(report.failed) + len(report.indexed)} files failed",
            file=sys.stderr,
        )
