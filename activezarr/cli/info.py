"""``activezarr info`` (the variables of an index) and ``activezarr versions`` (for bug reports)."""

from __future__ import annotations

import sys

from ._common import index_options, remote_options, storage_options


def cmd_info(args) -> int:
    from ..info import describe

    text = describe(
        args.index,
        args.variable,
        storage_options=storage_options(args),
        check_stale=not args.no_check_stale,
        allow_paths=args.allow_path,
    )
    print(text)
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


def register(sub) -> None:
    sp = sub.add_parser("info", help="describe the variables of an index")
    sp.add_argument("index")
    sp.add_argument("variable", nargs="?")
    remote_options(sp)
    index_options(sp)
    sp.set_defaults(func=cmd_info)


def register_versions(sub) -> None:
    sp = sub.add_parser("versions", help="print versions for bug reports")
    sp.set_defaults(func=cmd_versions)
