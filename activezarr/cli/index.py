"""``activezarr index``: index files, globs or URLs into an index directory and its catalog."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

from ..errors import ActiveZarrError
from ._common import FORMATTER, dumps, index_dir_option, remote_options, storage_options
from ._inputs import (
    UsageError,
    check_out_dir,
    check_sources,
    path_text,
    positive_int,
    read_path_list,
)

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


# How long --scheduler waits for the scheduler to answer: connecting, dask's handshake and its
# first reply. A scheduler that is up answers in milliseconds; the dask default (30 s) made a
# mistyped address look like a hang.
SCHEDULER_TIMEOUT_S = 5


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
        _probe_scheduler(address)
        client = Client(address, timeout=SCHEDULER_TIMEOUT_S)
    except ValueError as exc:  # distributed's own check of the address's form
        raise UsageError(
            f"--scheduler {address!r}: {exc}; give the scheduler's address, e.g. tcp://host:8786"
        ) from None
    except Exception as exc:  # whatever answered, it was no usable scheduler
        raise ActiveZarrError(_scheduler_failure(address, exc)) from exc
    with client:
        yield client


def _probe_scheduler(address: str) -> None:
    """Connect to ``address`` once with distributed's ``connect`` and its connect timeout.

    That timeout bounds connecting (with its reason: refused, unknown host), not dask's
    handshake after it, so a port that accepts and never answers would hold ``Client`` forever:
    the handshake gets as long again (``TimeoutError``)."""
    import asyncio

    from distributed.comm import connect
    from distributed.security import Security

    async def probe() -> None:
        args = Security().get_connection_args("client")
        comm = await asyncio.wait_for(
            connect(address, timeout=SCHEDULER_TIMEOUT_S, **args), 2 * SCHEDULER_TIMEOUT_S
        )
        await comm.close()

    asyncio.run(probe())


def _scheduler_failure(address: str, exc: Exception) -> str:
    """The one line ``index --scheduler`` fails with: the address, what happened, the fix."""
    fix = (
        "start the scheduler or correct --scheduler (e.g. tcp://host:8786), or leave "
        "--scheduler out to index in local processes"
    )
    if isinstance(exc, TypeError) and "TLS" in str(exc):
        return (
            f"the dask scheduler at {address} needs TLS: set the client's certificates in the "
            "dask configuration (distributed.comm.tls.ca-file, .client.cert, .client.key)"
        )
    if isinstance(exc, TimeoutError):
        return (
            f"{address} took the connection but gave no dask handshake within "
            f"{2 * SCHEDULER_TIMEOUT_S} s (is it a dask scheduler's port?): {fix}"
        )
    if isinstance(exc, OSError):  # refused, unknown host: distributed retried until its timeout
        return (
            f"cannot reach the dask scheduler at {address} within {SCHEDULER_TIMEOUT_S} s "
            f"({_os_reason(exc)}): {fix}"
        )
    return (
        f"no dask scheduler answered at {address} (the reply was not dask's: "
        f"{type(exc).__name__}): {fix}"
    )


def _os_reason(exc: BaseException) -> str:
    """The operating system's reason in ``exc``'s chain ("Connection refused", an unknown
    host), as distributed's last attempt saw it; when that attempt was cut by the timeout,
    only that no connection was made."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return "no connection"


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
        help="index on this dask scheduler, e.g. tcp://host:8786; fails when it does not answer "
        f"within {SCHEDULER_TIMEOUT_S} s (default: local processes)",
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
