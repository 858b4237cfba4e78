"""``activezarr info`` (the variables of an index) and ``activezarr versions`` (for bug reports)."""

from __future__ import annotations

import sys
from pathlib import Path

from ._common import FORMATTER, index_options, remote_options, storage_options
from ._inputs import name_text, path_text, resolve_index

INFO_EPILOG = """\
examples:
  activezarr info indexes/tas.json            # every variable
  activezarr info indexes/tas.json tas        # one variable: units, time range, chunks, codecs
  activezarr info tas.nc                      # indexes tas.nc into indexes/ first"""

VERSIONS_EPILOG = """\
examples:
  activezarr versions                          # paste into a bug report
  activezarr versions > versions.txt"""

PACKAGES = (
    "activezarr",
    "numpy",
    "zarr",
    "numcodecs",
    "kerchunk",
    "fsspec",
    "h5py",
    "netCDF4",
    "cftime",
    "xarray",
    "pandas",
    "requests",
    "cbor2",
    "s3fs",
    "aiohttp",
    "dask",
    "distributed",
)


def cmd_info(args) -> int:
    from ..info import describe

    so = storage_options(args)
    index = resolve_index(args.index, so)
    text = describe(
        index,
        args.variable,
        storage_options=so,
        check_stale=not args.no_check_stale,
        allow_paths=args.allow_path,
    )
    print(text)
    return 0


def _git_commit() -> str | None:
    """The commit of the checkout activezarr runs from (an editable install), if any."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{out.stdout.strip()} ({root})"


def _version(name: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"


def cmd_versions(args) -> int:
    import platform

    print(f"python: {platform.python_version()} ({sys.executable})")
    print(f"os: {platform.platform()} ({platform.machine()})")
    commit = _git_commit()
    for name in PACKAGES:
        print(f"{name}: {_version(name)}")
        if name == "activezarr" and commit:
            print(f"activezarr git commit: {commit}")
    pyarrow = _version("pyarrow")
    print(
        f"parquet engine: pyarrow {pyarrow}"
        + ("" if pyarrow[0].isdigit() else " (needed for --format parquet)")
    )
    deflate = _version("deflate")
    print(f"deflate (libdeflate for zlib chunks): {deflate}")
    import h5py

    print(f"hdf5: {h5py.version.hdf5_version}")
    return 0


def register(sub, parents=()) -> None:
    sp = sub.add_parser(
        "info",
        parents=list(parents),
        help="describe the variables of an index",
        description="Describe the variables of an index: dimensions, units and names, the "
        "time range as dates, fill value, chunks, codecs and stored bytes.",
        epilog=INFO_EPILOG,
        formatter_class=FORMATTER,
    )
    sp.add_argument(
        "index",
        type=path_text,
        help="index file (.json), parquet index directory, URL, or a .nc file",
    )
    sp.add_argument(
        "variable", nargs="?", type=name_text, help="only this variable (default: all of them)"
    )
    remote_options(sp)
    index_options(sp)
    sp.set_defaults(func=cmd_info)


def register_versions(sub, parents=()) -> None:
    sp = sub.add_parser(
        "versions",
        parents=list(parents),
        help="print versions for bug reports",
        description="Print the versions of Python, the OS, activezarr (and its git commit when "
        "run from a checkout) and every library it uses.",
        epilog=VERSIONS_EPILOG,
        formatter_class=FORMATTER,
    )
    sp.set_defaults(func=cmd_versions)
