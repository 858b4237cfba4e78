"""``activezarr index``: index files, globs or URLs into an index directory and its catalog."""

from __future__ import annotations

from ._common import remote_options, storage_options


def cmd_index(args) -> int:
    from ..catalog.indexing import index_many

    report = index_many(
        args.paths,
        out=args.out,
        jobs=args.jobs,
        force=args.force,
        storage_options=storage_options(args),
        from_list=args.from_list,
        format=args.format,
    )
    return 1 if report.failed else 0


def register(sub) -> None:
    sp = sub.add_parser("index", help="index netCDF4/HDF5 files into kerchunk JSON")
    sp.add_argument("paths", nargs="*", help="files, globs or URLs")
    sp.add_argument("--out", default="indexes", help="index directory (default: indexes/)")
    sp.add_argument("--from-list", help="file with one path per line, or a CSV with a path column")
    sp.add_argument("--jobs", "-j", type=int, default=1, help="files indexed in parallel")
    sp.add_argument("--force", action="store_true", help="rebuild indexes that are up to date")
    sp.add_argument(
        "--format",
        choices=["json", "parquet"],
        default="json",
        help="kerchunk JSON (default) or parquet references for files with very many chunks",
    )
    remote_options(sp)
    sp.set_defaults(func=cmd_index)
