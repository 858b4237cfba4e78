"""``activezarr index``: index files, globs or URLs into an index directory and its catalog."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

from ..errors import ActiveZarrError
from ._common import FORMATTER, dumps, index_dir_option, remote_options, storage_options
from ._inputs import check_out_dir, check_sources, path_text, positive_int, read_path_list

EPILOG = """\
examples:
  activezarr index data/tas_*.nc                         # -> indexes/tas_*.json + the catalog
  activezarr index "data/**/*.nc" --out idx --jobs 4     # recursive glob, 4 processes
  activezarr index s3://bucket/tas.nc --endpoint-url https://s3.example.org
  activezarr index --from-list files.csv                 # paths from a file (CSV: a path column)

Files already indexed and unchanged are skipped (--force rebuilds). A file that cannot be
indexed gets one line on stderr and exit status 1; the other files are still indexed."""


def cmd_index(args) -> int:
    from ..catalog.indexing import index_many

    check_out_dir(args.out)
    paths = list(args.paths)
    if args.from_list:
        paths += read_path_list(args.from_list)
    if not paths:
        raise ActiveZarrError("no files to index: give paths, globs or --from-list FILE")
    check_sources(paths)
    new = not Path(args.out).exists()
    report = None
    # --json: the per-file lines index_many prints give way to one JSON report; -q: to nothing
    # (warnings, failures and the interrupt summary still go to stderr)
    hush = args.json or args.quiet
    quiet = contextlib.redirect_stdout(io.StringIO()) if hush else contextlib.nullcontext()
    try:
        with quiet, _scheduler(args.scheduler) as executor:
            report = index_many(
                paths,
                out=args.out,
                jobs=args.jobs,
                force=args.force,
                storage_options=storage_options(args),
                format=args.format,
                progress=not args.quiet and not args.json,
                executor=executor,
            )
    finally:
        if new and not (report and (report.indexed or report.skipped)):
            _remove_if_empty(Path(args.out))
    if args.json:
        print(dumps(_report_json(report)))
    return 1 if report.failed else 0


def _report_json(report) -> dict:
    """What ``index --json`` prints: every file's outcome, failures included."""
    return {
        "indexed": [{"path": p, "index": str(t)} for p, t in report.indexed],
        "skipped": list(report.skipped),
        "failed": [{"path": p, "error": reason} for p, reason in report.failed],
        "warnings": list(report.warnings),
    }


def _remove_if_empty(out: Path) -> None:
    """Remove an index directory this run created when it holds no index (every file failed):
    no empty catalog is left behind to be mistaken for a result."""
    from ..catalog.catalog import Catalog
    from ..catalog.indexing import RUN_DIR, RUN_LOCK
    from ..index.cache import CACHE_DIR

    # what an index run leaves in its directory besides indexes
    bookkeeping = {"catalog.db", "catalog.db-wal", "catalog.db-shm", CACHE_DIR, RUN_DIR, RUN_LOCK}
    with contextlib.suppress(OSError, ActiveZarrError):
        if {p.name for p in out.iterdir()} <= bookkeeping and not len(Catalog(out)):
            shutil.rmtree(out)


@contextlib.contextmanager
def _scheduler(address: str | None):
    """A dask ``Client`` of the scheduler at ``address`` (None: index in local processes)."""
    if not address:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise ActiveZarrError(
            "--scheduler needs dask.distributed: pip install 'activezarr[dask]'"
        ) from None
    try:
        client = Client(address, timeout="30s")
    except (OSError, ValueError) as exc:
        raise ActiveZarrError(f"cannot reach the dask scheduler at {address} ({exc})") from exc
    with client:
        yield client


def register(sub, parents=()) -> None:
    sp = sub.add_parser(
        "index",
        parents=list(parents),
        help="index netCDF4/HDF5 files into kerchunk JSON",
        description="Index netCDF4/HDF5 files (local paths, globs, s3:// or https:// URLs) into "
        "kerchunk reference indexes, one per file, and record them in the catalog of the "
        "index directory.",
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    sp.add_argument(
        "paths",
        nargs="*",
        type=path_text,
        help="files, globs or URLs (quote globs for ** patterns)",
    )
    index_dir_option(sp)
    sp.add_argument(
        "--from-list",
        type=path_text,
        metavar="FILE",
        help="also index the paths in FILE: one per line, or a CSV with a 'path' column; "
        "- reads them from stdin (default: none)",
    )
    sp.add_argument(
        "--jobs",
        "-j",
        type=positive_int,
        metavar="N",
        help="worker processes, 1 or more (default: the number of CPUs)",
    )
    sp.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="index on this dask scheduler, e.g. tcp://host:8786 (default: local processes)",
    )
    sp.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress and no line per file; warnings and failures still go to stderr "
        "(default: progress and one line per file)",
    )
    sp.add_argument(
        "--json",
        action="store_true",
        help="print one JSON report (indexed, skipped, failed with the reason) instead of a line "
        "per file (default: off)",
    )
    sp.add_argument(
        "--force", action="store_true", help="rebuild indexes that are up to date (default: off)"
    )
    sp.add_argument(
        "--format",
        choices=["json", "parquet"],
        default="json",
        help="kerchunk JSON, or parquet references for files with millions of chunks "
        "(default: json)",
    )
    remote_options(sp)
    sp.set_defaults(func=cmd_index)
