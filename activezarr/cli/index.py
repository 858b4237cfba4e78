"""``activezarr index``: index files, globs or URLs into an index directory and its catalog."""

from __future__ import annotations

import contextlib

from ..errors import ActiveZarrError
from ._common import remote_options, storage_options


def cmd_index(args) -> int:
    from ..catalog.indexing import index_many

    with _scheduler(args.scheduler) as executor:
        report = index_many(
            args.paths,
            out=args.out,
            jobs=args.jobs,
            force=args.force,
            storage_options=storage_options(args),
            from_list=args.from_list,
            format=args.format,
            progress=not args.quiet,
            executor=executor,
        )
    return 1 if report.failed else 0


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
    except OSError as exc:
        raise ActiveZarrError(f"cannot reach the dask scheduler at {address} ({exc})") from exc
    with client:
        yield client


def register(sub) -> None:
    sp = sub.add_parser("index", help="index netCDF4/HDF5 files into kerchunk JSON")
    sp.add_argument("paths", nargs="*", help="files, globs or URLs")
    sp.add_argument("--out", default="indexes", help="index directory (default: indexes/)")
    sp.add_argument("--from-list", help="file with one path per line, or a CSV with a path column")
    sp.add_argument("--jobs", "-j", type=int, help="worker processes (default: the number of CPUs)")
    sp.add_argument("--scheduler", help="index on this dask scheduler (tcp://host:8786)")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress")
    sp.add_argument("--force", action="store_true", help="rebuild indexes that are up to date")
    sp.add_argument(
        "--format",
        choices=["json", "parquet"],
        default="json",
        help="kerchunk JSON (default) or parquet references for files with very many chunks",
    )
    remote_options(sp)
    sp.set_defaults(func=cmd_index)
