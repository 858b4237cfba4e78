"""The ``activezarr`` command: parse arguments, call the library, print; errors are one line.

Commands: ``index``, ``info``, ``reduce``, ``demo``, ``versions``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

from .errors import ActiveZarrError

log = logging.getLogger("activezarr")


def parse_selection(text: str | None):
    """``"0:2,4:6,::-1,3,..."`` → a tuple of slices, ints and Ellipsis."""
    if not text:
        return ()
    parts = []
    for item in text.split(","):
        item = item.strip()
        if item in ("...", "Ellipsis"):
            parts.append(Ellipsis)
        elif ":" in item:
            bits = [b.strip() for b in item.split(":")]
            if len(bits) > 3:
                raise ActiveZarrError(f"bad slice {item!r} in --select")
            try:
                parts.append(slice(*[int(b) if b else None for b in bits]))
            except ValueError:
                raise ActiveZarrError(
                    f"bad slice {item!r} in --select; use start:stop:step"
                ) from None
        else:
            try:
                parts.append(int(item))
            except ValueError:
                raise ActiveZarrError(
                    f"bad index {item!r} in --select; use integers, slices and ..."
                ) from None
    return tuple(parts)


def parse_axis(text: str | None):
    if text is None or text == "":
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ActiveZarrError(f"bad --axis {text!r}; use e.g. 0 or 0,2") from None
    return values[0] if len(values) == 1 else tuple(values)


def to_jsonable(value):
    """A (masked) array as JSON: numbers, with null for masked elements."""
    arr = np.ma.asarray(value)
    if arr.ndim == 0:
        return None if arr.mask is not np.ma.nomask and bool(arr.mask) else arr.item()
    filled = arr.astype(object).filled(None) if np.ma.is_masked(arr) else arr.data.astype(object)
    return filled.tolist()


# -- commands -------------------------------------------------------------------------------


def cmd_index(args) -> int:
    from .indexer import index_many

    report = index_many(
        args.paths,
        out=args.out,
        jobs=args.jobs,
        force=args.force,
        storage_options=_storage_options(args),
        from_list=args.from_list,
        format=args.format,
    )
    return 1 if report.failed else 0


def _storage_options(args) -> dict | None:
    options = json.loads(args.storage_options) if getattr(args, "storage_options", None) else {}
    if getattr(args, "endpoint_url", None):
        options.setdefault("client_kwargs", {})["endpoint_url"] = args.endpoint_url
    if getattr(args, "anon", False):
        options["anon"] = True
    if getattr(args, "profile", None):
        options["profile"] = args.profile
    return options or None


def cmd_info(args) -> int:
    from .info import describe

    print(describe(args.index, args.variable, storage_options=_storage_options(args)))
    return 0


def cmd_reduce(args) -> int:
    from .active import Active

    options = {}
    if args.server:
        options = {"backend": "reductionist", "server": args.server}
    with Active(args.index, args.variable, storage_options=_storage_options(args), **options) as a:
        selection = parse_selection(args.select)
        axis = parse_axis(args.axis)
        parts = a.reduce(args.op, selection, axis, components=True)
        count = parts["count"]
        value = _value_of(args.op, parts)
        if args.json:
            print(
                json.dumps(
                    {
                        "op": args.op,
                        "variable": args.variable,
                        "result": to_jsonable(value),
                        "count": to_jsonable(count),
                        "dtype": str(np.asarray(value).dtype),
                        "shape": list(np.shape(value)),
                        "stats": a.stats.as_dict(),
                    }
                )
            )
        else:
            print(f"{args.op} of {args.variable}: {value}")
            print(f"count: {count}")
    return 0


def _value_of(op: str, parts: dict):
    """The answer of ``op`` from its components (mean = sum / count)."""
    if op != "mean":
        return parts[op]
    count = np.asarray(parts["count"])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.asarray(parts["sum"], dtype=np.float64) / np.where(count == 0, 1, count)
    return np.ma.masked_array(mean, mask=count == 0)


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(Path(args.out))
    return 0


def cmd_versions(args) -> int:
    import importlib.metadata as md
    import platform

    print(f"python: {platform.python_version()} ({sys.executable})")
    for name in (
        "activezarr",
        "numpy",
        "zarr",
        "numcodecs",
        "kerchunk",
        "fsspec",
        "h5py",
        "requests",
        "cbor2",
        "s3fs",
        "netCDF4",
        "dask",
        "distributed",
    ):
        try:
            print(f"{name}: {md.version(name)}")
        except md.PackageNotFoundError:
            print(f"{name}: not installed")
    import h5py

    print(f"hdf5: {h5py.version.hdf5_version}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="activezarr",
        description="Index netCDF4/HDF5 files once, then reduce them where the data lives.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress and details")
    sub = p.add_subparsers(dest="command", required=True)

    def remote_options(sp) -> None:
        sp.add_argument("--storage-options", help="fsspec storage options as JSON")
        sp.add_argument("--endpoint-url", help="S3 endpoint URL (S3-compatible stores)")
        sp.add_argument("--anon", action="store_true", help="anonymous S3 access")
        sp.add_argument("--profile", help="AWS profile name for S3 credentials")

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

    sp = sub.add_parser("info", help="describe the variables of an index")
    sp.add_argument("index")
    sp.add_argument("variable", nargs="?")
    remote_options(sp)
    sp.set_defaults(func=cmd_info)

    sp = sub.add_parser("reduce", help="reduce a variable over a selection")
    sp.add_argument("index")
    sp.add_argument("variable")
    sp.add_argument("--op", required=True, choices=["mean", "sum", "min", "max", "count"])
    sp.add_argument("--select", help='selection, e.g. "0:2,4:6,7:9" or "3,...,::2"')
    sp.add_argument("--axis", help="axes to reduce, e.g. 0 or 0,2 (default: all)")
    sp.add_argument("--server", help="Reductionist server URL (default: reduce locally)")
    sp.add_argument("--json", action="store_true", help="print JSON for scripts")
    remote_options(sp)
    sp.set_defaults(func=cmd_reduce)

    sp = sub.add_parser("demo", help="write a sample file, index it and reduce it")
    sp.add_argument("--out", default="indexes", help="index directory (default: indexes/)")
    sp.set_defaults(func=cmd_demo)

    from .catalog_cli import add_catalog_commands

    add_catalog_commands(sub, remote_options)

    sp = sub.add_parser("versions", help="print versions for bug reports")
    sp.set_defaults(func=cmd_versions)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    warnings.simplefilter("default")
    try:
        return args.func(args)
    except ActiveZarrError as exc:
        print(f"activezarr: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("activezarr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
